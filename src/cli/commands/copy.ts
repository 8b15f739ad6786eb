import { locationText } from '../../repository/location.js';
import { formatBytes } from '../../core/units.js';
import { LifeboatError } from '../../core/errors.js';
import { parseGfs } from '../../repository/job.js';
import type { CopyJobDefinition } from '../../app/index.js';
import type { Command } from '../command.js';
import { copyThroughServer } from '../copy-hand-off.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, optionalString, requireString } from '../command.js';

function whole(ctx: Parameters<Command['run']>[0], flag: string): number | undefined {
  const v = optionalString(ctx, flag);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new LifeboatError('LFB_ERR_USAGE', `--${flag} must be a whole number ≥ 1, not "${v}"`);
  return Number(v);
}

/** A copy job's settings as people read them. */
function describeCopy(c: CopyJobDefinition): [string, string][] {
  const gfs = c.gfs ? Object.entries(c.gfs).filter(([, n]) => n > 0) : [];
  return [
    ['job', c.job],
    ['to repository', c.toRepo],
    ['retention', c.retainDays === undefined ? `${c.retainPoints} points` : `${c.retainDays} days (at least 3 points)`],
    ['gfs', gfs.length > 0 ? gfs.map(([k, n]) => `${k}=${n}`).join(',') : 'none'],
    ['schedule', c.schedule ?? 'none (runs only when asked)'],
    ['window', c.window ?? 'any time'],
    ['after', c.after === undefined ? 'no job' : `each successful run of job ${c.after}`],
    ['created', c.createdAt],
    ['id', c.copyId],
  ];
}

function printRows(ctx: Parameters<Command['run']>[0], rows: [string, string][]): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) ctx.out(`${k.padEnd(width)}  ${v}`);
}

export const copyCreate: Command = {
  name: 'copy create',
  usage:
    'copy create <name> --repo <dir> --to-repo <dir> --job <job> [--retain-points N | --retain-days N] [--gfs weekly=N,monthly=N,yearly=N] [--schedule <cron>] [--window HH:MM-HH:MM] [--after <job>] [--json]',
  summary: "a backup copy job: the job's points copied to a second repository",
  positionals: ['name'],
  options: {
    repo: REPO_OPTION,
    'to-repo': { type: 'string', description: "the target repository (made, with the source's block size and compression, if it does not exist)" },
    job: { type: 'string', description: 'the job whose points are copied' },
    'retain-points': { type: 'string', description: 'restore points kept on the target', defaultText: '7' },
    'retain-days': {
      type: 'string',
      description: 'keep the points of this many days on the target (at least 3 points) instead of a count',
      defaultText: 'count points',
    },
    gfs: { type: 'string', description: 'long-term fulls kept on the target: weekly=N,monthly=N,yearly=N', defaultText: 'none' },
    schedule: { type: 'string', description: 'when `lifeboat serve` runs the copy by itself (cron)', defaultText: 'only when asked' },
    window: { type: 'string', description: 'the daily window the server runs it in', defaultText: 'any time' },
    after: { type: 'string', description: 'the server runs the copy after each successful run of this backup job (usually --job)', defaultText: 'no job' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const retainDays = whole(ctx, 'retain-days');
    if (retainDays !== undefined && optionalString(ctx, 'retain-points') !== undefined)
      throw new LifeboatError('LFB_ERR_USAGE', '--retain-points and --retain-days exclude each other');
    const gfs = optionalString(ctx, 'gfs');
    const def = await ctx.service.createCopyJob(requireString(ctx, 'repo'), {
      name: ctx.args[0]!,
      job: requireString(ctx, 'job'),
      toRepo: requireString(ctx, 'to-repo'),
      retainPoints: whole(ctx, 'retain-points') ?? 7,
      retainDays,
      gfs: gfs === undefined ? undefined : parseGfs(gfs),
      schedule: optionalString(ctx, 'schedule'),
      window: optionalString(ctx, 'window'),
      after: optionalString(ctx, 'after'),
    });
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(def));
    else ctx.out(`copy job ${def.name}: job ${def.job} → ${locationText(def.toRepo)}`);
  },
};

export const copyShow: Command = {
  name: 'copy show',
  usage: 'copy show <name> --repo <dir> [--json]',
  summary: "show a copy job's settings",
  positionals: ['name'],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const def = await ctx.service.copyJob(requireString(ctx, 'repo'), ctx.args[0]!);
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(def));
    else printRows(ctx, describeCopy(def));
  },
};

export const copyList: Command = {
  name: 'copy list',
  usage: 'copy list --repo <dir> [--json]',
  summary: "list the repository's copy jobs",
  positionals: [],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const all = await ctx.service.listCopyJobs(requireString(ctx, 'repo'));
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(all));
    else for (const c of all) ctx.out(`${c.name}  job ${c.job} → ${locationText(c.toRepo)}`);
  },
};

export const copyDelete: Command = {
  name: 'copy delete',
  usage: 'copy delete <name> --repo <dir>',
  summary: 'forget a copy job (the target repository and its points stay)',
  positionals: ['name'],
  options: { repo: REPO_OPTION },
  async run(ctx) {
    await ctx.service.deleteCopyJob(requireString(ctx, 'repo'), ctx.args[0]!);
    ctx.out(`copy job ${ctx.args[0]!} deleted; the target repository keeps its points`);
  },
};

export const copyRun: Command = {
  name: 'copy run',
  usage: 'copy run <name> --repo <dir> [--wait] [--json]',
  summary: "copy the job's new points to the target repository, then apply the target's retention (through the running server, if one runs)",
  positionals: ['name'],
  options: { repo: REPO_OPTION, wait: WAIT_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const started = process.hrtime.bigint();
    const repo = requireString(ctx, 'repo');
    // Checked here first: a typo is an error of this command, not of the server.
    await ctx.service.copyJob(repo, ctx.args[0]!);
    // A server running for the repository runs the copy (its catalog records it); else this process copies.
    const handed = await copyThroughServer(ctx, repo, ctx.args[0]!);
    const r =
      handed?.result ??
      (await ctx.service.runCopy(repo, ctx.args[0]!, {
        waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
        signal: ctx.signal,
        onProgress: (p) => ctx.progress(`point ${p.index}/${p.count} (${p.sourcePointId}) disk ${p.disk + 1}: block ${p.blocksDone}/${p.blocksTotal}`),
      }));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ ...r, seconds, ...(handed ? { runId: handed.runId } : {}) }));
      return;
    }
    if (handed) ctx.out(`copy run ${handed.runId} on the server`);
    if (r.copied.length === 0) ctx.out(`copy ${r.copy}: up to date (${r.target})`);
    for (const p of r.copied)
      ctx.out(
        `${p.kind} ${p.pointId} ← point ${p.sourcePointId}: ${p.blocksCopied} blocks copied (${formatBytes(p.bytesCopied)}), ${p.blocksUnchanged} unchanged, ${p.blocksZero} zero`,
      );
    for (const n of r.cleanedUp) ctx.out(`  removed ${n} left by an interrupted copy`);
    for (const a of r.retention)
      ctx.out(`  retention on the target: ${a.skipped !== undefined ? `postponed (${a.skipped}) — ` : `${a.action.type} — `}${a.action.reason}`);
    ctx.out(`  ${seconds.toFixed(1)} s`);
  },
};
