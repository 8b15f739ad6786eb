import { repositoryRoot } from '../../repository/location.js';
import { resolve } from 'node:path';
import { AllowList } from '../../app/allow-list.js';
import { LifeboatError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { parseSize } from '../../core/units.js';
import { parseDuration } from '../../core/schedule-text.js';
import type { Command } from '../command.js';
import { REPO_OPTION, optionalString, requireString } from '../command.js';
import { CATALOG_OPTION, STATE_DIR_OPTION, stateDirOf } from '../state-dir.js';

function port(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw new LifeboatError('LFB_ERR_USAGE', `${flag} must be a port number, not "${text}"`);
  return Number(text);
}

export const serve: Command = {
  name: 'serve',
  usage:
    'serve --repo <dir> [--state-dir <dir>] [--http-port N] [--http-bind <addr>] [--tls-cert <pem> --tls-key <pem> | --no-tls] [--max-tasks N] [--backup-nice N] [--catalog <url>] [--target-folder <dir>…] [--no-scheduler] [--bind <addr>] [--nfs-port N] [--mount-port N] [--portmap-port N] [--no-portmap] [--nbd-port N] [--nbd-bind <addr>] [--allow <cidr,…>] [--cache-budget <size>] [--disk-cache <size>] [--files-idle-timeout <duration>]',
  summary: 'run the server until stopped: jobs on their schedules, the HTTP API, and instant recovery (NFSv3 datastore, NBD)',
  positionals: [],
  options: {
    repo: REPO_OPTION,
    bind: { type: 'string', description: 'address the NFS, MOUNT and portmapper services listen on', defaultText: '0.0.0.0' },
    'nfs-port': { type: 'string', description: 'NFS port; given explicitly, a taken port is an error', defaultText: '2049, else the next free one' },
    'mount-port': { type: 'string', description: 'MOUNT port; given explicitly, a taken port is an error', defaultText: '1058, else the next free one' },
    'portmap-port': { type: 'string', description: 'portmapper port (when no system rpcbind serves 111)', defaultText: '111' },
    'no-portmap': { type: 'boolean', description: 'neither serve nor register with a portmapper', defaultText: 'register with rpcbind, or serve one' },
    'nbd-port': { type: 'string', description: 'NBD port; given explicitly, a taken port is an error', defaultText: '10809, else the next free one' },
    'nbd-bind': { type: 'string', description: 'address the NBD server listens on', defaultText: 'the --bind address' },
    allow: { type: 'string', description: 'client addresses allowed, as IPv4 addresses or CIDRs, comma-separated', defaultText: AllowList.LOOPBACK },
    'cache-budget': {
      type: 'string',
      description: 'memory for decoded backup blocks, all instant sessions and file-level browses together (e.g. 256M, 1G)',
      defaultText: '512M',
    },
    'disk-cache': {
      type: 'string',
      description:
        "local storage for decoded backup blocks, kept across restarts in the repository's cache/blocks folder (0: none; never for an encrypted repository)",
      defaultText: '2G',
    },
    'state-dir': STATE_DIR_OPTION,
    catalog: {
      ...CATALOG_OPTION,
      description: 'the catalog database: postgres://… (several servers of the same repositories may share one), or a folder for SQLite',
    },
    'http-port': { type: 'string', description: 'HTTP API port; given explicitly, a taken port is an error', defaultText: '9443, else the next free one' },
    'http-bind': { type: 'string', description: 'address the HTTP API listens on', defaultText: '127.0.0.1' },
    'tls-cert': {
      type: 'string',
      description: 'HTTPS certificate (PEM) of the API, with --tls-key',
      defaultText: 'self-signed, made in the state folder at first start',
    },
    'tls-key': { type: 'string', description: 'private key (PEM) of --tls-cert' },
    'no-tls': { type: 'boolean', description: 'plain HTTP (only for a loopback --http-bind)', defaultText: 'HTTPS' },
    'max-tasks': { type: 'string', description: 'disk tasks running at once, over all jobs', defaultText: '4' },
    'backup-nice': {
      type: 'string',
      description: 'nice levels (0-19) the backups run below the server, so the API and instant recovery win the CPU; 0: the same priority',
      defaultText: '10',
    },
    'target-folder': {
      type: 'string',
      multiple: true,
      description: 'a folder operators may restore and migrate into through the HTTP API, once per folder (admins may name any path)',
      defaultText: 'none: admins only',
    },
    'mover-timeout': {
      type: 'string',
      description: 'how long a data mover may say nothing before its backups are given to another mover (e.g. 15s, 1m)',
      defaultText: '15s',
    },
    'files-idle-timeout': {
      type: 'string',
      description: "file-level recovery through the API: a point's file session (its appliance) closes after this long unused (e.g. 30s, 10m, 1h)",
      defaultText: '10m',
    },
    'no-scheduler': {
      type: 'boolean',
      description: 'run no job by schedule (runs asked for through the API or the CLI still run)',
      defaultText: 'schedules run',
    },
  },
  async run(ctx) {
    const { startService } = await import('../../service/service-server.js');
    const budget = optionalString(ctx, 'cache-budget');
    const diskCache = optionalString(ctx, 'disk-cache');
    const httpBind = optionalString(ctx, 'http-bind') ?? '127.0.0.1';
    const cert = optionalString(ctx, 'tls-cert');
    const key = optionalString(ctx, 'tls-key');
    if ((cert === undefined) !== (key === undefined)) throw new LifeboatError('LFB_ERR_USAGE', '--tls-cert and --tls-key go together');
    const noTls = ctx.values['no-tls'] === true;
    if (noTls && cert !== undefined) throw new LifeboatError('LFB_ERR_USAGE', '--no-tls and --tls-cert exclude each other');
    if (noTls && !AllowList.parse(AllowList.LOOPBACK).allows(httpBind))
      throw new LifeboatError('LFB_ERR_USAGE', `--no-tls serves passwords and tokens in clear: only on a loopback --http-bind, not ${httpBind}`);
    const maxTasksText = optionalString(ctx, 'max-tasks');
    const maxTasks = maxTasksText === undefined ? undefined : Number(maxTasksText);
    if (maxTasks !== undefined && !(Number.isInteger(maxTasks) && maxTasks >= 1 && maxTasks <= 256))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--max-tasks must be a whole number from 1 to 256, not "${maxTasksText}"`);
    const niceText = optionalString(ctx, 'backup-nice');
    const backupNice = niceText === undefined ? undefined : Number(niceText);
    if (backupNice !== undefined && !(/^\d+$/.test(niceText!) && backupNice <= 19))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--backup-nice must be a whole number from 0 to 19, not "${niceText}"`);
    const idleText = optionalString(ctx, 'files-idle-timeout');
    const filesIdleTimeoutMs = idleText === undefined ? undefined : parseDuration(idleText, '--files-idle-timeout');
    const moverText = optionalString(ctx, 'mover-timeout');
    const moverTimeoutMs = moverText === undefined ? undefined : parseDuration(moverText, '--mover-timeout');
    const running = await startService({
      filesIdleTimeoutMs,
      moverTimeoutMs,
      stateDir: resolve(stateDirOf(ctx)),
      catalog: optionalString(ctx, 'catalog'),
      httpPort: port(optionalString(ctx, 'http-port'), '--http-port'),
      httpBind,
      tls: noTls ? 'none' : cert !== undefined && key !== undefined ? { certPath: cert, keyPath: key } : 'self-signed',
      maxTasks,
      backupNice,
      noScheduler: ctx.values['no-scheduler'] === true,
      targetFolders: ((ctx.values['target-folder'] as string[] | undefined) ?? []).map((f) => resolve(f)),
      repo: repositoryRoot(requireString(ctx, 'repo')),
      bind: optionalString(ctx, 'bind') ?? '0.0.0.0',
      nfsPort: port(optionalString(ctx, 'nfs-port'), '--nfs-port'),
      mountPort: port(optionalString(ctx, 'mount-port'), '--mount-port'),
      portmapPort: port(optionalString(ctx, 'portmap-port'), '--portmap-port'),
      portmap: ctx.values['no-portmap'] !== true,
      nbdPort: port(optionalString(ctx, 'nbd-port'), '--nbd-port'),
      nbdBind: optionalString(ctx, 'nbd-bind'),
      allow: optionalString(ctx, 'allow') ?? AllowList.LOOPBACK,
      // Decoded backup blocks, all sessions together (default 512M).
      cacheBudgetBytes: budget === undefined ? undefined : parseSize(budget, '--cache-budget'),
      diskCacheBudgetBytes: diskCache === undefined ? undefined : parseSize(diskCache, '--disk-cache'),
      clock: ctx.service.clock,
      logger: createLogger((process.env['LIFEBOAT_LOG'] as 'info' | undefined) ?? 'info'),
      say: ctx.out,
    });
    await new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    ctx.out('stopping: running backups stop at their next safe point, overlays are flushed');
    await running.close();
  },
};
