import { LifeboatError } from '../../core/errors.js';
import { retentionWarnings } from '../../repository/job-defaults.js';
import { BACKUP_METHODS, parseGfs, parseWeekdays, type BackupMethod } from '../../repository/job.js';
import type { Command, CommandContext } from '../command.js';
import { JSON_OPTION, WAIT_OPTION, optionalString, requireString } from '../command.js';
import { jobCreate } from './job-create.js';
import { SCHEDULE_CLEAR_OPTIONS, scheduleFlags } from './job-schedule-flags.js';
import { describeJob } from './job-show.js';

/** The flags of `job create` that `job set` changes; any other given flag is refused, never silently ignored. */
export const JOB_SET_FLAGS = [
  'repo',
  'disk',
  'method',
  'retain-points',
  'retain-days',
  'active-full',
  'synthetic-full',
  'transform-to-rollbacks',
  'gfs',
  'cbt',
  'qmp',
  'drive',
  'disk-format',
  'vm-config',
  'schedule',
  'window',
  'retries',
  'retry-delay',
  'after',
  'disabled',
  'webhook',
  'mover',
] as const;

/** Every flag job set acts on: the settings, their negations, and its own. */
export const JOB_SET_HANDLED: ReadonlySet<string> = new Set<string>([
  ...JOB_SET_FLAGS,
  ...Object.keys(SCHEDULE_CLEAR_OPTIONS),
  'no-cbt',
  'no-transform-to-rollbacks',
  'wait',
  'json',
  'help',
]);

/** A whole number ≥ 1, or a usage error naming the flag (as `job create` says it). */
function count(ctx: CommandContext, flag: string): number | undefined {
  const v = optionalString(ctx, flag);
  if (v !== undefined && (!/^\d+$/.test(v) || Number(v) < 1)) throw new LifeboatError('LFB_ERR_USAGE', `--${flag} must be a whole number ≥ 1, not "${v}"`);
  return v === undefined ? undefined : Number(v);
}

/** On/off: `--cbt` and `--no-cbt`. */
function toggle(ctx: CommandContext, flag: string): boolean | undefined {
  const on = ctx.values[flag] === true;
  const off = ctx.values[`no-${flag}`] === true;
  if (on && off) throw new LifeboatError('LFB_ERR_USAGE', `--${flag} and --no-${flag} exclude each other`);
  return on ? true : off ? false : undefined;
}

/** Weekdays, or none (`none` or an empty value) to turn the schedule off. */
function weekdays(ctx: CommandContext, flag: string): ReturnType<typeof parseWeekdays> | undefined {
  const v = optionalString(ctx, flag);
  if (v === undefined) return undefined;
  return v.trim().toLowerCase() === 'none' ? [] : parseWeekdays(v, `--${flag}`);
}

export const jobSet: Command = {
  name: 'job set',
  usage:
    'job set <job> --repo <dir> [any flag of job create: --disk … | --method … | --retain-points N | --retain-days N | --active-full <weekday,…|none> | --synthetic-full <weekday,…|none> | --[no-]transform-to-rollbacks | --gfs weekly=N,…|none | --qmp <socket> --drive <node-name> … | --[no-]cbt | --disk-format … | --vm-config <file> | --schedule <cron> | --no-schedule | --window HH:MM-HH:MM | --no-window | --retries N | --retry-delay <duration> | --after <job> | --no-after | --disabled | --enabled] [--wait] [--json]',
  summary: "change a job's settings (checked as job create checks them)",
  positionals: ['job'],
  options: {
    ...jobCreate.options,
    'no-cbt': { type: 'boolean', description: 'turn changed-block tracking off' },
    'no-transform-to-rollbacks': { type: 'boolean', description: 'stop turning older chains into rollbacks' },
    ...SCHEDULE_CLEAR_OPTIONS,
    wait: WAIT_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const unhandled = Object.keys(ctx.values).filter((k) => ctx.values[k] !== undefined && !JOB_SET_HANDLED.has(k));
    if (unhandled.length > 0) throw new LifeboatError('LFB_ERR_USAGE', `${unhandled.map((k) => `--${k}`).join(', ')} cannot be changed by job set`);
    const method = optionalString(ctx, 'method');
    if (method !== undefined && !(BACKUP_METHODS as readonly string[]).includes(method))
      throw new LifeboatError('LFB_ERR_USAGE', `--method must be one of ${BACKUP_METHODS.join(', ')}`);
    const retainPoints = count(ctx, 'retain-points');
    const retainDays = count(ctx, 'retain-days');
    if (retainPoints !== undefined && retainDays !== undefined)
      throw new LifeboatError('LFB_ERR_USAGE', '--retain-points and --retain-days exclude each other');
    const qmp = optionalString(ctx, 'qmp');
    const drives = (ctx.values['drive'] as string[] | undefined) ?? [];
    if ((qmp === undefined) !== (drives.length === 0))
      throw new LifeboatError('LFB_ERR_USAGE', '--qmp <monitor socket> and --drive <node-name> go together (a running VM)');
    const disks = ctx.values['disk'] as string[] | undefined;
    const gfsText = optionalString(ctx, 'gfs');
    const changes = {
      disks: disks ?? (qmp !== undefined ? [] : undefined),
      qmp,
      drives: qmp !== undefined ? drives : undefined,
      method: method as BackupMethod | undefined,
      retainPoints,
      retainDays,
      activeFullDays: weekdays(ctx, 'active-full'),
      syntheticFullDays: weekdays(ctx, 'synthetic-full'),
      transformToRollbacks: toggle(ctx, 'transform-to-rollbacks'),
      cbt: toggle(ctx, 'cbt'),
      diskFormat: optionalString(ctx, 'disk-format'),
      gfs: gfsText === undefined ? undefined : ['', 'none'].includes(gfsText.trim().toLowerCase()) ? null : parseGfs(gfsText),
      vmConfigFile: optionalString(ctx, 'vm-config'),
      ...scheduleFlags(ctx),
    };
    if (Object.values(changes).every((v) => v === undefined))
      throw new LifeboatError('LFB_ERR_USAGE', `nothing to change: give the flags to change, as for job create\nusage: lifeboat ${jobSet.usage}`);
    const { before, after } = await ctx.service.setJob(requireString(ctx, 'repo'), ctx.args[0]!, changes, {
      waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
    });
    // As job create warns: a change can leave a job whose retention never deletes anything.
    const warnings = retentionWarnings(after);
    for (const w of warnings) process.stderr.write(`lifeboat: warning: ${w}\n`);
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ ...after, warnings }));
      return;
    }
    const was = new Map(describeJob(before));
    const changed = describeJob(after).filter(([label, value]) => was.get(label) !== value);
    if (changed.length === 0) {
      ctx.out(`job ${after.name} unchanged (its settings already were as given)`);
      return;
    }
    ctx.out(`changed job ${after.name}:`);
    for (const [label, value] of changed) ctx.out(`  ${label}: ${was.get(label)} → ${value}`);
  },
};
