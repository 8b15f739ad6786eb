import { folderRepositoryRoot } from '../../repository/location.js';
import { resolve } from 'node:path';
import { callControl } from '../../app/control-api.js';
import type { HandedOffRun } from '../../app/control-runs.js';
import {
  deleteSureBackupJob,
  listSureBackupJobNames,
  loadSureBackupJob,
  saveSureBackupJob,
  SUREBACKUP_DEFAULT_RETRIES,
  type SureBackupJob,
} from '../../app/surebackup-jobs.js';
import { LifeboatError, isLifeboatError, type ErrorCode } from '../../core/errors.js';
import { DEFAULT_RETRY_DELAY, nextFire } from '../../core/schedule-text.js';
import type { Command, CommandContext, OptionSpec } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';
import { DEFAULT_BOOT_TIMEOUT_S, labBootFlags } from '../lab-flags.js';
import { SCHEDULE_CLEAR_OPTIONS, SCHEDULE_OPTIONS, scheduleFlags } from './job-schedule-flags.js';
import { surebackupRun } from './surebackup.js';

const POLL_MS = 500;

/** `surebackup run`'s group flags, as a SureBackup job keeps them. */
const GROUP_OPTIONS: Record<string, OptionSpec> = Object.fromEntries(
  ['vm', 'wait-for', 'serial-pattern', 'port', 'http', 'script', 'timeout', 'accel'].map((k) => [k, surebackupRun.options[k]!]),
);
/** A SureBackup job has no webhook (its runs are in the catalog and the console) and no data mover (its lab runs on the server). */
const withoutWebhook = (o: Record<string, OptionSpec>): Record<string, OptionSpec> =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !k.endsWith('webhook') && !k.endsWith('mover')));
const SB_SCHEDULE_OPTIONS = withoutWebhook(SCHEDULE_OPTIONS);
const SB_OPTIONS: Record<string, OptionSpec> = {
  ...GROUP_OPTIONS,
  'every-point': {
    type: 'boolean',
    description: 'each VM without @point boots the oldest point of its job not tested yet (the latest again once all were)',
    defaultText: "each VM's given point, or its job's latest",
  },
  ...SB_SCHEDULE_OPTIONS,
  retries: {
    type: 'string',
    description: 'how many more times the server tries a failed run (a failed test is a finding)',
    defaultText: String(SUREBACKUP_DEFAULT_RETRIES),
  },
  after: { type: 'string', description: 'a backup job of the repository: run this one when a run of that one succeeds', defaultText: 'none' },
};
const SB_CLEAR_OPTIONS = withoutWebhook(SCHEDULE_CLEAR_OPTIONS);

const list = (ctx: CommandContext, name: string): string[] | undefined => ctx.values[name] as string[] | undefined;

/** The job's settings given on the command line (undefined: not given; for `set`, `null` clears). */
async function settingsFromFlags(ctx: CommandContext, repo: string, base: SureBackupJob): Promise<SureBackupJob> {
  const given = (k: string): boolean => ctx.values[k] !== undefined;
  if (given('timeout') || given('accel') || given('serial-pattern')) labBootFlags(ctx);
  const s = scheduleFlags(ctx);
  if (ctx.values['every-point'] === true && ctx.values['no-every-point'] === true)
    throw new LifeboatError('LFB_ERR_USAGE', '--every-point and --no-every-point exclude each other');
  const after = s.after === undefined ? base.after : (s.after ?? undefined);
  if (after !== undefined && after !== base.after && !(await ctx.service.listJobs(repo)).includes(after))
    throw new LifeboatError('LFB_ERR_JOB_NOT_FOUND', `--after ${after}: no backup job of that name in ${repo}`, { details: { job: after } });
  const timeout = optionalString(ctx, 'timeout');
  const accel = optionalString(ctx, 'accel') as 'kvm' | 'tcg' | undefined;
  const pick = <T>(v: T | null | undefined, old: T | undefined): T | undefined => (v === undefined ? old : (v ?? undefined));
  return {
    name: base.name,
    vms: list(ctx, 'vm') ?? base.vms,
    waitFor: list(ctx, 'wait-for') ?? base.waitFor,
    ports: list(ctx, 'port') ?? base.ports,
    http: list(ctx, 'http') ?? base.http,
    // Made absolute now: the server runs them from its own folder.
    scripts: list(ctx, 'script')?.map((f) => resolve(f)) ?? base.scripts,
    serialPattern: optionalString(ctx, 'serial-pattern') ?? base.serialPattern,
    timeoutS: timeout === undefined ? base.timeoutS : Number(timeout),
    accel: accel ?? base.accel,
    everyPoint: ctx.values['every-point'] === true ? true : ctx.values['no-every-point'] === true ? false : base.everyPoint,
    schedule: pick(s.schedule, base.schedule),
    window: pick(s.window, base.window),
    retries: s.retries ?? base.retries,
    retryDelay: s.retryDelay ?? base.retryDelay,
    after,
    disabled: s.disabled ?? base.disabled,
  };
}

/** The job as people read it. */
export function describeSureBackupJob(j: SureBackupJob, nextRunAt: string | null): [string, string][] {
  return [
    ['group', j.vms.join(', ')],
    ['every point', j.everyPoint ? 'yes: each VM without @point boots the oldest point not tested yet' : 'no'],
    ['wait for', j.waitFor?.join(', ') ?? 'none'],
    ['ports', j.ports?.join(', ') ?? 'none'],
    ['http', j.http?.join(', ') ?? 'none'],
    ['scripts', j.scripts?.join(', ') ?? 'none'],
    [
      'heartbeat',
      `${j.timeoutS ?? DEFAULT_BOOT_TIMEOUT_S} s${j.serialPattern !== undefined ? `, serial pattern ${JSON.stringify(j.serialPattern)}` : ', guest agent'}`,
    ],
    ['accel', j.accel ?? 'kvm when usable, else tcg'],
    ['schedule', j.schedule ?? 'none (runs only when asked)'],
    ['window', j.window ?? 'any time'],
    ['retries', `${j.retries ?? SUREBACKUP_DEFAULT_RETRIES}, ${j.retryDelay ?? DEFAULT_RETRY_DELAY} apart`],
    ['after', j.after === undefined ? 'no backup job' : `backup job ${j.after} succeeds`],
    ['enabled', j.disabled === true ? 'no (the server starts no run by itself)' : 'yes'],
    ['next run', nextRunAt ?? 'none scheduled'],
  ];
}

function nextRunOf(j: SureBackupJob, now: Date): string | null {
  if (j.schedule === undefined || j.disabled === true) return null;
  const t = nextFire(j.schedule, now.getTime());
  return t === null ? null : new Date(t).toISOString();
}

function print(ctx: CommandContext, j: SureBackupJob): void {
  const next = nextRunOf(j, ctx.service.clock.now());
  if (ctx.values['json'] === true) ctx.out(JSON.stringify({ ...j, retries: j.retries ?? SUREBACKUP_DEFAULT_RETRIES, nextRunAt: next }));
  else {
    ctx.out(`SureBackup job ${j.name}`);
    for (const [k, v] of describeSureBackupJob(j, next)) ctx.out(`  ${k.padEnd(12)} ${v}`);
  }
}

export const surebackupJobCreate: Command = {
  name: 'surebackup job create',
  usage:
    "surebackup job create <name> --repo <dir> --vm <job>[@<point>] [--vm …] [surebackup run's group flags] [--every-point] [--schedule CRON] [--window HH:MM-HH:MM] [--retries N] [--retry-delay D] [--after <backup job>] [--disabled] [--json]",
  summary: 'define a SureBackup job: a group the server boots and tests by itself, on a schedule or after a backup job',
  positionals: ['name'],
  options: { repo: REPO_OPTION, ...SB_OPTIONS, json: JSON_OPTION },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    const name = ctx.args[0]!;
    if (!list(ctx, 'vm')?.length) throw new LifeboatError('LFB_ERR_USAGE', '--vm <job>[@<point>] is required (once per VM of the group)');
    const job = await saveSureBackupJob(repo, await settingsFromFlags(ctx, repo, { name, vms: [] }), { create: true });
    print(ctx, job);
  },
};

export const surebackupJobSet: Command = {
  name: 'surebackup job set',
  usage:
    'surebackup job set <name> --repo <dir> [the flags of surebackup job create] [--no-every-point] [--no-schedule] [--no-window] [--no-after] [--enabled] [--json]',
  summary: "change a SureBackup job's settings (a list flag given replaces the list)",
  positionals: ['name'],
  options: {
    repo: REPO_OPTION,
    ...SB_OPTIONS,
    'no-every-point': { type: 'boolean', description: 'each VM boots its given point, or its job latest (undoes --every-point)' },
    ...SB_CLEAR_OPTIONS,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    const base = await loadSureBackupJob(repo, ctx.args[0]!);
    const job = await saveSureBackupJob(repo, await settingsFromFlags(ctx, repo, base), { create: false });
    print(ctx, job);
  },
};

export const surebackupJobShow: Command = {
  name: 'surebackup job show',
  usage: 'surebackup job show <name> --repo <dir> [--json]',
  summary: "show a SureBackup job's settings and next run",
  positionals: ['name'],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    print(ctx, await loadSureBackupJob(folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup'), ctx.args[0]!));
  },
};

export const surebackupJobList: Command = {
  name: 'surebackup job list',
  usage: 'surebackup job list --repo <dir> [--json]',
  summary: "list the repository's SureBackup jobs",
  positionals: [],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    const jobs = await Promise.all((await listSureBackupJobNames(repo)).map((n) => loadSureBackupJob(repo, n)));
    const now = ctx.service.clock.now();
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(jobs.map((j) => ({ ...j, nextRunAt: nextRunOf(j, now) }))));
      return;
    }
    if (jobs.length === 0) ctx.out('no SureBackup jobs');
    for (const j of jobs)
      ctx.out(
        `${j.name}  ${j.vms.join(', ')}${j.everyPoint ? '  every point' : ''}  ${j.schedule ?? (j.after ? `after ${j.after}` : 'when asked')}${j.disabled ? '  (disabled)' : ''}`,
      );
  },
};

export const surebackupJobDelete: Command = {
  name: 'surebackup job delete',
  usage: 'surebackup job delete <name> --repo <dir>',
  summary: 'delete a SureBackup job (its reports stay in the catalog)',
  positionals: ['name'],
  options: { repo: REPO_OPTION },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    await deleteSureBackupJob(repo, ctx.args[0]!);
    ctx.out(`deleted SureBackup job ${ctx.args[0]!}`);
  },
};

export const surebackupJobRun: Command = {
  name: 'surebackup job run',
  usage: 'surebackup job run <name> --repo <dir> [--json]',
  summary: "run a SureBackup job now on the repository's running server and follow it: exit 0 when every test passed, 4 when any failed",
  positionals: ['name'],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    const name = ctx.args[0]!;
    // Checked here first: a typo is an error of this command, not of the server.
    await loadSureBackupJob(repo, name);
    let id: number;
    try {
      ({ id } = await callControl<{ id: number }>(repo, 'POST', '/runs', { job: name, kind: 'surebackup' }));
    } catch (err) {
      if (isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING'))
        throw new LifeboatError(
          'LFB_ERR_SERVER_NOT_RUNNING',
          `no server runs for ${repo}: a SureBackup job runs inside \`lifeboat serve\` (start it, or use surebackup run)`,
        );
      throw err;
    }
    let stopping = false;
    let run: HandedOffRun;
    for (;;) {
      if (ctx.signal.aborted && !stopping) {
        stopping = true;
        ctx.progress(`stopping run ${id} on the server`);
        await callControl(repo, 'DELETE', `/runs/${id}`).catch(() => undefined);
      }
      run = await callControl<HandedOffRun>(repo, 'GET', `/runs/${id}`);
      if (run.state !== 'queued' && run.state !== 'running') break;
      ctx.progress(`SureBackup run ${id} ${run.state} on the server`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (ctx.values['json'] === true) ctx.out(JSON.stringify({ run: id, state: run.state, report: run.labReport ?? null, error: run.error ?? null }));
    else ctx.out(`SureBackup run ${id} of ${name}: ${run.state}${run.labReport ? `; report ${run.labReport.id} in ${run.labReport.reportDir}` : ''}`);
    if (run.state === 'succeeded') return;
    if (run.state === 'interrupted' || run.state === 'stopped')
      throw new LifeboatError('LFB_ERR_INTERRUPTED', `run ${id} was ${run.state} on the server${run.error ? `: ${run.error.message}` : ''}`);
    throw new LifeboatError((run.error?.code ?? 'LFB_ERR_INTERNAL') as ErrorCode, run.error?.message ?? `run ${id} ended ${run.state}`, {
      details: { run: id, ...(run.labReport ? { report: run.labReport.id, reportDir: run.labReport.reportDir } : {}) },
    });
  },
};
