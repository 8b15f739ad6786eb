import { mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { NATIVE_HELPER_MISSING, nativeHelper } from '../core/native.js';
import type { Clock } from '../core/clock.js';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { MOUNT_PROGRAM, NFS_PROGRAM, mountProgram, nfsProgram } from '../nfs/index.js';
import { InstantRecovery } from '../recovery/index.js';
import { NbdServer } from '../nbd/index.js';
import { Repository, locationText } from '../repository/index.js';
import { IPPROTO_TCP, IPPROTO_UDP, PMAP_PROG, PortmapRegistry, RpcServer, portmapProgram, type Mapping } from '../rpc/index.js';
import { LockFile } from '../storage/index.js';
import { AllowList } from './allow-list.js';
import { controlFile, startControlApi, type ControlInfo } from './control-api.js';
import { registerWithPortmapper } from './portmap-registration.js';
import type { ControlRuns } from './control-runs.js';
import type { ControlLabReports } from './control-lab-reports.js';
import type { ControlFiles } from './control-files.js';

export interface ServeOptions {
  readonly repo: string;
  readonly bind: string;
  /** undefined = default port, taking the next free one if it is busy. */
  readonly nfsPort?: number | undefined;
  readonly mountPort?: number | undefined;
  readonly portmapPort?: number | undefined;
  readonly portmap: boolean;
  readonly nbdPort?: number | undefined;
  readonly nbdBind?: string | undefined;
  readonly allow: string;
  /** Bytes of decoded backup blocks all sessions keep together (InstantRecovery's default when undefined). */
  readonly cacheBudgetBytes?: number | undefined;
  /** Bytes of decoded backup blocks kept on local storage across restarts (InstantRecovery's default when undefined; 0: none). */
  readonly diskCacheBudgetBytes?: number | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly say: (line: string) => void;
  /** Backups the CLI hands to this server (the service's runtime, once it runs). */
  readonly controlRuns?: (() => ControlRuns | undefined) | undefined;
  /** Where the SureBackup reports the CLI hands over are recorded (the service's catalog, once it is open). */
  readonly controlLabReports?: (() => ControlLabReports | undefined) | undefined;
  /** `lifeboat files ls|get|find` the CLI hands to this server (the service's file sessions). */
  readonly controlFiles?: (() => ControlFiles | undefined) | undefined;
}

export interface RunningServer {
  /** The repository's root folder, absolute. */
  readonly repoRoot: string;
  readonly control: ControlInfo;
  readonly recovery: InstantRecovery;
  close(): Promise<void>;
}

/**
 * Listens on `wanted`, or — when it is a default rather than the user's
 * choice — on the next free port after it, and says so.
 */
export async function listenNear(
  listen: (port: number) => Promise<number>,
  wanted: number,
  explicit: boolean,
  what: string,
  say: (l: string) => void,
): Promise<number> {
  for (let port = wanted; port < wanted + 100; port++) {
    try {
      const got = await listen(port);
      if (port !== wanted) say(`${what}: port ${wanted} is in use, serving on ${got} instead`);
      return got;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      if (explicit) throw new LifeboatError('LFB_ERR_PORT_IN_USE', `${what}: port ${wanted} is in use`);
    }
  }
  throw new LifeboatError('LFB_ERR_PORT_IN_USE', `${what}: no free port from ${wanted} to ${wanted + 99}`);
}

/**
 * One server per repository: two would open the same session overlays and
 * write the same map files. The lock lives as long as the server (a killed
 * one leaves it stale, and the next start takes it over).
 */
async function lockRepository(repo: Repository): Promise<LockFile> {
  const root = locationText(repo.root);
  await mkdir(join(repo.hostRoot, 'instant'), { recursive: true, mode: 0o700 });
  try {
    return await LockFile.acquire(join(repo.hostRoot, 'instant', 'server.lock'), `the server of ${root}`);
  } catch (err) {
    if (!isLifeboatError(err, 'LFB_ERR_JOB_LOCKED')) throw err;
    const pid = err.details['pid'] as number;
    const host = err.details['host'] as string;
    const info = await readFile(controlFile(repo.root), 'utf8')
      .then((t) => JSON.parse(t) as ControlInfo)
      .catch(() => undefined);
    const where =
      info?.pid === pid
        ? `: NFS on port ${info.nfsPort}, MOUNT on ${info.mountPort}${info.nbdPort ? `, NBD on ${info.nbdPort}` : ''}, control API on 127.0.0.1:${info.port}`
        : ' (still starting)';
    throw new LifeboatError(
      'LFB_ERR_SERVER_RUNNING',
      `a Lifeboat server already serves ${root}: process ${pid} on ${host}${where}; stop it first (one server per repository)`,
      { details: { pid, host, ...(info?.pid === pid ? { nfsPort: info.nfsPort, mountPort: info.mountPort, controlPort: info.port } : {}) } },
    );
  }
}

/**
 * `lifeboat serve`: the vPower-style NFS datastore of a repository — a
 * portmapper (or registration with the system's), MOUNT v3, NFSv3, NBD and
 * the local control API — in one process. Every listener but the control API
 * refuses a peer outside `allow` when it connects, loopback included (the
 * default allow list is loopback only); the control API answers loopback
 * peers only.
 */
export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const allow = AllowList.parse(opts.allow);
  const repo = await Repository.open(opts.repo);
  const lock = await lockRepository(repo);
  const recovery = new InstantRecovery(repo, opts.clock, opts.logger, {
    cacheBudgetBytes: opts.cacheBudgetBytes,
    diskCacheBudgetBytes: opts.diskCacheBudgetBytes,
  });
  try {
    await recovery.loadSessions();
  } catch (err) {
    await recovery.close().catch(() => undefined);
    await lock.release();
    throw err;
  }
  const rpcOpts = { logger: opts.logger, accept: (a: string) => allow.allows(a), maxRecordBytes: 1024 * 1024 + 64 * 1024 };
  const nfs = new RpcServer(rpcOpts);
  nfs.register(
    nfsProgram(recovery.fs, {
      // A damaged backup block is answered NFS3ERR_IO, never wrong bytes, and logged with its file and block.
      onServerError: (err, status) =>
        opts.logger.error(
          `nfs: answered ${status === 5 ? 'NFS3ERR_IO' : `nfsstat3 ${status}`}: ${err instanceof Error ? err.message : String(err)}`,
          isLifeboatError(err) ? { ...err.details, code: err.code } : {},
        ),
      // Who uses which session's disks: `instant migrate --finish` must not copy under a writer.
      onCall: (handle, address) => recovery.clients.noteNfsCall(handle, address),
    }),
  );
  const mount = new RpcServer(rpcOpts);
  mount.register(mountProgram(recovery.fs));
  const closers: (() => Promise<void>)[] = [];
  try {
    const nfsPort = await listenNear((p) => nfs.listen(p, opts.bind), opts.nfsPort ?? 2049, opts.nfsPort !== undefined, 'NFS', opts.say);
    closers.push(() => nfs.close());
    const mountPort = await listenNear(
      async (p) => {
        const got = await mount.listen(p, opts.bind);
        await mount.listenUdp(got, opts.bind).catch(() => undefined); // MOUNT over UDP too, when the port is free there
        return got;
      },
      opts.mountPort ?? 1058,
      opts.mountPort !== undefined,
      'MOUNT',
      opts.say,
    );
    closers.push(() => mount.close());
    const mappings: Mapping[] = [
      { prog: NFS_PROGRAM, vers: 3, prot: IPPROTO_TCP, port: nfsPort },
      { prog: MOUNT_PROGRAM, vers: 3, prot: IPPROTO_TCP, port: mountPort },
      { prog: MOUNT_PROGRAM, vers: 3, prot: IPPROTO_UDP, port: mountPort },
    ];
    let portmapMode = 'off';
    if (opts.portmap) {
      const pmPort = opts.portmapPort ?? 111;
      const registry = new PortmapRegistry();
      for (const m of [
        { prog: PMAP_PROG, vers: 2, prot: IPPROTO_TCP, port: pmPort },
        { prog: PMAP_PROG, vers: 2, prot: IPPROTO_UDP, port: pmPort },
        ...mappings,
      ])
        registry.set(m, { owned: true });
      // SET and UNSET come from loopback only (the registry's rule); anyone outside the allow list is refused at accept.
      const pm = new RpcServer({ logger: opts.logger, accept: (a: string) => allow.allows(a) });
      pm.register(portmapProgram(registry));
      try {
        await pm.listen(pmPort, opts.bind);
        await pm.listenUdp(pmPort, opts.bind);
        closers.push(() => pm.close());
        portmapMode = `serving on ${pmPort}`;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        await pm.close();
        // A system rpcbind (or another Lifeboat) holds the port: register with it, removing only what is ours.
        const registration = await registerWithPortmapper({
          portmapPort: pmPort,
          repoRoot: repo.root,
          mappings,
          explicitPorts: `nfsport=${nfsPort}, mountport=${mountPort}`,
        });
        closers.push(() => registration.unregister());
        portmapMode = registration.mode;
      }
    }
    const host = opts.bind === '0.0.0.0' || opts.bind === '::' ? hostname() : opts.bind;
    const nbd = new NbdServer({ exports: recovery.nbdExports(), logger: opts.logger, clock: opts.clock, accept: (a) => allow.allows(a) });
    const nbdPort = await listenNear((p) => nbd.listen(p, opts.nbdBind ?? opts.bind), opts.nbdPort ?? 10809, opts.nbdPort !== undefined, 'NBD', opts.say);
    closers.push(() => nbd.close());
    recovery.setNbdEndpoint(opts.nbdBind ?? opts.bind, nbdPort, nbd);
    const control = await startControlApi(
      repo.root,
      recovery,
      { nfsPort, mountPort, nbdPort, portmap: portmapMode, host },
      {
        logger: opts.logger,
        ...(opts.controlRuns ? { runs: opts.controlRuns } : {}),
        ...(opts.controlLabReports ? { labReports: opts.controlLabReports } : {}),
        ...(opts.controlFiles ? { files: opts.controlFiles } : {}),
      },
    );
    closers.push(() => control.close());
    opts.say(
      `serving ${locationText(repo.root)}: NFS on ${opts.bind}:${nfsPort}, MOUNT on ${mountPort}, portmapper ${portmapMode}; export /lifeboat; NBD on ${opts.nbdBind ?? opts.bind}:${nbdPort}; allow ${opts.allow}`,
    );
    for (const s of recovery.list()) opts.say(`session ${s.name}: ${s.state}${s.problem ? ` (${s.problem})` : ''}`);
    // The same facts as the line above, timestamped in the log, so a log file shows when each server ran.
    opts.logger.info('serve: started', {
      repo: repo.root,
      pid: process.pid,
      nfsPort,
      mountPort,
      nbdPort,
      portmap: portmapMode,
      sessions: recovery.list().length,
    });
    if (nativeHelper() === null) opts.logger.warn(`serve: ${NATIVE_HELPER_MISSING}`);
    return {
      repoRoot: repo.root,
      control: control.info,
      recovery,
      close: async () => {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        await recovery.close();
        await lock.release();
        opts.logger.info('serve: stopped', { repo: repo.root });
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await recovery.close();
    await lock.release();
    throw err;
  }
}
