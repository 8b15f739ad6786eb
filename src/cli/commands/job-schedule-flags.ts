import { LifeboatError } from '../../core/errors.js';
import type { ScheduleSettingsChange } from '../../app/service.js';
import type { CommandContext, OptionSpec } from '../command.js';
import { optionalString } from '../command.js';

/** The flags of `job create` (and `job set`) that say when `lifeboat serve` runs a job. */
export const SCHEDULE_OPTIONS: Record<string, OptionSpec> = {
  schedule: {
    type: 'string',
    description: 'when the server runs the job: a cron expression, e.g. "0 22 * * *" (daily 22:00) or "*/30 * * * * *" (seconds first)',
    defaultText: 'none: only when asked',
  },
  window: { type: 'string', description: 'the daily window the server runs it in, HH:MM-HH:MM (may wrap midnight: 22:00-06:00)', defaultText: 'any time' },
  retries: { type: 'string', description: 'how many more times the server tries a failed run', defaultText: '3' },
  'retry-delay': { type: 'string', description: 'how long the server waits before trying again: 30s, 10m, 1h…', defaultText: '10m' },
  after: { type: 'string', description: 'another job of the repository: run this one when a run of that one succeeds', defaultText: 'none' },
  disabled: { type: 'boolean', description: 'the server starts no run of the job by itself (runs asked for still run)', defaultText: 'enabled' },
  webhook: { type: 'string', description: 'an http(s) URL the server POSTs each ended run to, as JSON (retried 3 times)', defaultText: 'none' },
  mover: {
    type: 'string',
    description: "the data mover (lifeboat mover --name) or group of movers (--group) that runs the job's backups for the server",
    defaultText: 'the server itself',
  },
};

/** What `job set` adds: a way back to each default. */
export const SCHEDULE_CLEAR_OPTIONS: Record<string, OptionSpec> = {
  'no-schedule': { type: 'boolean', description: 'the server no longer runs the job by a schedule' },
  'no-window': { type: 'boolean', description: 'the server may run the job at any time' },
  'no-after': { type: 'boolean', description: 'no longer run after another job' },
  enabled: { type: 'boolean', description: 'the server runs the job by itself again (undoes --disabled)' },
  'no-webhook': { type: 'boolean', description: 'no longer POST ended runs anywhere' },
  'no-mover': { type: 'boolean', description: "the server runs the job's backups itself again" },
};

/** The schedule settings given on the command line; undefined for each one not given, null for a cleared one. */
export function scheduleFlags(ctx: CommandContext): ScheduleSettingsChange {
  const cleared = (flag: string): string | null | undefined => {
    const value = optionalString(ctx, flag);
    if (value !== undefined && ctx.values[`no-${flag}`] === true) throw new LifeboatError('LFB_ERR_USAGE', `--${flag} and --no-${flag} exclude each other`);
    return ctx.values[`no-${flag}`] === true ? null : value;
  };
  const retriesText = optionalString(ctx, 'retries');
  if (retriesText !== undefined && !/^\d+$/.test(retriesText.trim()))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--retries must be a whole number ≥ 0, not "${retriesText}"`);
  const disabled = ctx.values['disabled'] === true;
  const enabled = ctx.values['enabled'] === true;
  if (disabled && enabled) throw new LifeboatError('LFB_ERR_USAGE', '--disabled and --enabled exclude each other');
  return {
    schedule: cleared('schedule'),
    window: cleared('window'),
    retries: retriesText === undefined ? undefined : Number(retriesText.trim()),
    retryDelay: optionalString(ctx, 'retry-delay'),
    after: cleared('after'),
    disabled: disabled ? true : enabled ? false : undefined,
    webhook: cleared('webhook'),
    mover: cleared('mover'),
  };
}
