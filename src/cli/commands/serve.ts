import { AllowList } from '../../app/allow-list.js';
import { LifeboatError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { parseSize } from '../../core/units.js';
import type { Command } from '../command.js';
import { REPO_OPTION, optionalString, requireString } from '../command.js';

function port(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw new LifeboatError('LFB_ERR_USAGE', `${flag} must be a port number, not "${text}"`);
  return Number(text);
}

export const serve: Command = {
  name: 'serve',
  usage:
    'serve --repo <dir> [--bind <addr>] [--nfs-port N] [--mount-port N] [--portmap-port N] [--no-portmap] [--nbd-port N] [--nbd-bind <addr>] [--allow <cidr,…>] [--cache-budget <size>]',
  summary: 'run the instant-recovery server (NFSv3 datastore) until stopped',
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
    'cache-budget': { type: 'string', description: 'memory for decoded backup blocks, all sessions together (e.g. 256M, 1G)', defaultText: '512M' },
  },
  async run(ctx) {
    const { serve: startServer } = await import('../../app/serve.js');
    const budget = optionalString(ctx, 'cache-budget');
    const running = await startServer({
      repo: requireString(ctx, 'repo'),
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
      clock: ctx.service.clock,
      logger: createLogger((process.env['LIFEBOAT_LOG'] as 'info' | undefined) ?? 'info'),
      say: ctx.out,
    });
    await new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    ctx.out('stopping: flushing overlays');
    await running.close();
  },
};
