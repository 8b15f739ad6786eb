import { hostname } from 'node:os';
import type { Clock } from '../core/clock.js';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { MOUNT_PROGRAM, NFS_PROGRAM, mountProgram, nfsProgram } from '../nfs/index.js';
import { InstantRecovery } from '../recovery/index.js';
import { NbdServer } from '../nbd/index.js';
import { Repository } from '../repository/index.js';
import { IPPROTO_TCP, IPPROTO_UDP, PMAP_PROG, PortmapRegistry, RpcServer, pmapRegister, portmapProgram, type Mapping } from '../rpc/index.js';
import { AllowList } from './allow-list.js';
import { startControlApi, type ControlInfo } from './control-api.js';

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
  readonly clock: Clock;
  readonly logger: Logger;
  readonly say: (line: string) => void;
}

export interface RunningServer {
  readonly control: ControlInfo;
  readonly recovery: InstantRecovery;
  close(): Promise<void>;
}

/**
 * Listens on `wanted`, or — when it is a default rather than the user's
 * choice — on the next free port after it, and says so.
 */
async function listenNear(
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
 * `lifeboat serve`: the vPower-style NFS datastore of a repository — a
 * portmapper (or registration with the system's), MOUNT v3, NFSv3, and the
 * local control API — in one process.
 */
export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const repo = await Repository.open(opts.repo);
  const allow = AllowList.parse(opts.allow);
  const recovery = new InstantRecovery(repo, opts.clock, opts.logger, { cacheBudgetBytes: opts.cacheBudgetBytes });
  await recovery.loadSessions();
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
      const pm = new RpcServer({ logger: opts.logger });
      pm.register(portmapProgram(registry));
      try {
        await pm.listen(pmPort, opts.bind);
        await pm.listenUdp(pmPort, opts.bind);
        closers.push(() => pm.close());
        portmapMode = `serving on ${pmPort}`;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        await pm.close();
        // A system rpcbind (or another Lifeboat) holds the port: register with it instead,
        // replacing what a previous run of ours may have left (UNSET once per program).
        for (const prog of [NFS_PROGRAM, MOUNT_PROGRAM])
          await pmapRegister({ prog, vers: 3, prot: IPPROTO_TCP, port: 0 }, { unset: true, port: pmPort }).catch(() => false);
        const refused: Mapping[] = [];
        for (const m of mappings) if (!(await pmapRegister(m, { port: pmPort }).catch(() => false))) refused.push(m);
        closers.push(async () => {
          for (const prog of [NFS_PROGRAM, MOUNT_PROGRAM])
            await pmapRegister({ prog, vers: 3, prot: IPPROTO_TCP, port: 0 }, { unset: true, port: pmPort }).catch(() => false);
        });
        portmapMode =
          refused.length === 0
            ? `registered with the portmapper on ${pmPort}`
            : `on ${pmPort} kept another server's registration (clients reach this one with explicit ports: nfsport=${nfsPort}, mountport=${mountPort})`;
      }
    }
    const host = opts.bind === '0.0.0.0' || opts.bind === '::' ? hostname() : opts.bind;
    const nbd = new NbdServer({ exports: recovery.nbdExports(), logger: opts.logger, accept: (a) => allow.allows(a) });
    const nbdPort = await listenNear((p) => nbd.listen(p, opts.nbdBind ?? opts.bind), opts.nbdPort ?? 10809, opts.nbdPort !== undefined, 'NBD', opts.say);
    closers.push(() => nbd.close());
    recovery.setNbdEndpoint(opts.nbdBind ?? opts.bind, nbdPort);
    const control = await startControlApi(repo.root, recovery, { nfsPort, mountPort, portmap: portmapMode, host });
    closers.push(() => control.close());
    opts.say(
      `serving ${repo.root}: NFS on ${opts.bind}:${nfsPort}, MOUNT on ${mountPort}, portmapper ${portmapMode}; export /lifeboat; NBD on ${opts.nbdBind ?? opts.bind}:${nbdPort}; allow ${opts.allow}`,
    );
    for (const s of recovery.list()) opts.say(`session ${s.name}: ${s.state}${s.problem ? ` (${s.problem})` : ''}`);
    return {
      control: control.info,
      recovery,
      close: async () => {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        await recovery.close();
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await recovery.close();
    throw err;
  }
}
