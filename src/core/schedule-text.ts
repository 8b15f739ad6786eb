import { Cron } from 'croner';
import { LifeboatError } from './errors.js';

/**
 * The text forms of a job's schedule settings (cron expressions, windows,
 * durations), read the same way by `job create`/`job set` (repository) and by
 * the scheduler (src/schedule). Pure: no clock of its own.
 */

/** Retry defaults, as Veeam's: 3 more tries, 10 minutes apart. */
/** When the server runs a job by itself: the settings backup jobs (job.json) and SureBackup jobs share. */
export interface ScheduleSettings {
  /** A cron expression (5 fields, or 6 with seconds first); absent = never by itself. */
  readonly schedule?: string | undefined;
  /** The daily time window (HH:MM-HH:MM, may wrap midnight) in which the server starts and runs it; absent = any time. */
  readonly window?: string | undefined;
  /** How many more times the server tries a failed run; absent = the kind of job's default. */
  readonly retries?: number | undefined;
  /** How long after a failed run the server tries again (e.g. 10m); absent = DEFAULT_RETRY_DELAY. */
  readonly retryDelay?: string | undefined;
  /** The backup job whose successful runs (or runs with warnings) queue this one. */
  readonly after?: string | undefined;
  /** The server queues no run of it by itself (schedule, retry, chaining); runs asked for by hand still run. */
  readonly disabled?: boolean | undefined;
}

export const DEFAULT_RETRIES = 3;
export const DEFAULT_RETRY_DELAY = '10m';

/** The server's own time zone, the default for schedules and windows. */
let zoneFor: { tz: string | undefined; zone: string } | undefined;

export function localTimeZone(): string {
  // Building an Intl.DateTimeFormat costs ~0.1 ms, and the scheduler asks every round for every job: once per TZ value.
  const tz = process.env['TZ'];
  if (zoneFor === undefined || zoneFor.tz !== tz) zoneFor = { tz, zone: Intl.DateTimeFormat().resolvedOptions().timeZone };
  return zoneFor.zone;
}

const cronCache = new Map<string, Cron>();

/**
 * A cron expression of 5 fields (minute first) or 6 (seconds first), or a
 * nickname (@daily, @hourly, …), in `timezone` (default: the server's). An
 * expression that is not valid, or that never fires, is LFB_ERR_INVALID_ARGUMENT
 * naming `flag`.
 */
export function parseCron(expr: string, flag = '--schedule', timezone?: string): Cron {
  const key = `${timezone ?? ''}\u0000${expr}`;
  const known = cronCache.get(key);
  if (known !== undefined) return known;
  let cron: Cron;
  try {
    // No callback: croner only evaluates the expression (it starts no timer).
    cron = new Cron(expr.trim(), { mode: '5-or-6-parts', ...(timezone !== undefined ? { timezone } : {}) });
  } catch (err) {
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `${flag}: "${expr}" is not a cron expression (minute hour day month weekday, with an optional seconds field first): ${(err as Error).message}`,
    );
  }
  if (cron.nextRun(new Date(0)) === null) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag}: "${expr}" never fires (no date matches it)`);
  if (cronCache.size > 1000) cronCache.clear();
  cronCache.set(key, cron);
  return cron;
}

/** The first time `expr` fires strictly after `after` (ms since the epoch), or null if it never does. */
export function nextFire(expr: string, after: number, timezone?: string): number | null {
  return nextRunAfter(parseCron(expr, '--schedule', timezone), after);
}

/**
 * The interval the last answer of nextRunAfter holds for, per expression: the
 * next fire after any time in [from, next) is `next`. A scheduler asks again
 * and again as its clock moves between two fires; croner's search (in a time
 * zone, through Intl) is then done once per fire, not once per question.
 */
const lastAnswer = new WeakMap<Cron, { from: number; next: number | null }>();

/** croner's nextRun strictly after `after`, remembered between fires. */
export function nextRunAfter(cron: Cron, after: number): number | null {
  const known = lastAnswer.get(cron);
  if (known !== undefined && after >= known.from && (known.next === null || after < known.next)) return known.next;
  const next = cron.nextRun(new Date(after))?.getTime() ?? null;
  lastAnswer.set(cron, { from: after, next });
  return next;
}

/** A daily time window in minutes after local midnight; `end < start` wraps midnight (22:00-06:00). */
export interface TimeWindow {
  readonly start: number;
  readonly end: number;
}

/** "HH:MM-HH:MM" (24-hour clock); start and end differ. */
export function parseWindow(text: string, flag = '--window'): TimeWindow {
  const m = /^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$/.exec(text);
  const bad = (why: string): LifeboatError => new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag}: "${text}" ${why} (use HH:MM-HH:MM, e.g. 22:00-06:00)`);
  if (!m) throw bad('is not a time window');
  const [h1, m1, h2, m2] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  if (h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59) throw bad('has a time that does not exist');
  const window = { start: h1 * 60 + m1, end: h2 * 60 + m2 };
  if (window.start === window.end) throw bad('is empty: its start and end are the same (leave --window out for no window)');
  return window;
}

export function formatWindow(w: TimeWindow): string {
  const hhmm = (x: number): string => `${String(Math.floor(x / 60)).padStart(2, '0')}:${String(x % 60).padStart(2, '0')}`;
  return `${hhmm(w.start)}-${hhmm(w.end)}`;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as 30s, 10m, 1h, 1h30m or 2d, in milliseconds (at least 1 second, at most 30 days). */
export function parseDuration(text: string, flag = '--retry-delay'): number {
  const t = text.trim().toLowerCase();
  const bad = (why: string): LifeboatError =>
    new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag}: "${text}" ${why} (use a number with s, m, h or d, e.g. 30s, 10m, 1h30m)`);
  if (!/^(\d+[smhd])+$/.test(t)) throw bad('is not a duration');
  let ms = 0;
  for (const part of t.matchAll(/(\d+)([smhd])/g)) ms += Number(part[1]) * UNIT_MS[part[2]!]!;
  if (ms < 1000) throw bad('is shorter than a second');
  if (ms > 30 * UNIT_MS['d']!) throw bad('is longer than 30 days');
  return ms;
}

/** The shortest text parseDuration reads as `ms` (whole seconds): 600000 → "10m", 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  let s = Math.round(ms / 1000);
  let out = '';
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (s >= size) {
      out += `${Math.floor(s / size)}${unit}`;
      s %= size;
    }
  }
  return out === '' ? '0s' : out;
}
