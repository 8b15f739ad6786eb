import { AllowList } from '../../app/allow-list.js';
import { LifeboatError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { parseSize } from '../../core/units.js';
import type { Command } from '../command.js';
import { optionalString, requireString } from '../command.js';

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
    repo: { type: 'string' },
    bind: { type: 'string' },
    'nfs-port': { type: 'string' },
    'mount-port': { type: 'string' },
    'portmap-port': { type: 'string' },
    'no-portmap': { type: 'boolean' },
    'nbd-port': { type: 'string' },
    'nbd-bind': { type: 'string' },
    allow: { type: 'string' },
    'cache-budget': { type: 'string' },
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
