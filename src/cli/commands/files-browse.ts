import { createLogger } from '../../core/log.js';
import { LifeboatError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
// Types alone here: the appliance's and the repository's code load only when this process reads the point itself
// (withBrowse), not for a command a running server answers.
import type { FileEntry, OpenedBrowse, Volume } from '../../files/index.js';
import type { CommandContext, OptionSpec } from '../command.js';
import { requireString } from '../command.js';

export const POINT_OPTION: OptionSpec = { type: 'string', description: 'the restore point: an id (or unique prefix) or latest' };

/** Progress lines go to standard error even off a terminal: the appliance's boot takes seconds, and scripts' logs should say why. */
export function stderrProgress(line: string): void {
  process.stderr.write(`lifeboat: ${line}\n`);
}

/**
 * Opens a browse of the point named on the command line, runs `fn`, and
 * closes it in every outcome, a SIGINT or SIGTERM included (which would
 * otherwise end this process and leave the appliance behind).
 */
export async function withBrowse<T>(ctx: CommandContext, fn: (b: OpenedBrowse) => Promise<T>, mountAt?: string): Promise<T> {
  const repo = requireString(ctx, 'repo');
  const job = ctx.args[0]!;
  const point = requireString(ctx, 'point');
  const logger = createLogger();
  let opened: OpenedBrowse | undefined;
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    stderrProgress(`${sig}: closing the browse`);
    void (opened?.close() ?? Promise.resolve()).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const { ephemeralSource, openBrowse } = await import('../../files/index.js');
    opened = await openBrowse((workDir) => ephemeralSource(repo, job, point, workDir, logger), {
      progress: stderrProgress,
      ...(mountAt !== undefined ? { mountAt } : {}),
    });
    return await fn(opened);
  } finally {
    await opened?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function modeString(e: FileEntry): string {
  const t = { file: '-', directory: 'd', symlink: 'l', 'block-device': 'b', 'char-device': 'c', fifo: 'p', socket: 's' }[e.type];
  const bits = 'rwxrwxrwx'
    .split('')
    .map((c, i) => ((e.mode >> (8 - i)) & 1 ? c : '-'))
    .join('');
  return t + bits;
}

export function entryLine(e: FileEntry): string {
  return `${modeString(e)} ${`${e.uid}:${e.gid}`.padEnd(11)} ${String(e.size).padStart(12)} ${e.mtime} ${e.name}${e.target !== undefined ? ` -> ${e.target}` : ''}`;
}

export function volumeLine(v: Volume): string {
  const state = v.mounted ? 'mounted' : v.problem !== undefined ? `not mountable: ${v.problem.split('\n')[0]}` : '';
  return `${v.id.padEnd(12)} ${v.kind.padEnd(10)} ${(v.type ?? '-').padEnd(8)} ${formatBytes(v.size).padStart(10)} ${(v.label ?? '').padEnd(12)} ${state}`.trimEnd();
}

export function guestPathArg(ctx: CommandContext, index: number): string {
  const p = ctx.args[index];
  if (p === undefined || p === '') throw new LifeboatError('LFB_ERR_USAGE', 'name a path, e.g. disk0p2:/etc/fstab');
  return p;
}
