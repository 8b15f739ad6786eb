import { LifeboatError } from '../core/errors.js';
import {
  DEFAULT_RETRIES,
  DEFAULT_RETRY_DELAY,
  localTimeZone,
  nextRunAfter,
  parseCron,
  parseDuration,
  parseWindow,
  type ScheduleSettings,
  type TimeWindow,
} from '../core/schedule-text.js';
import type { Cron } from 'croner';
import { nextWindowClose, nextWindowOpen, windowOpen } from './window.js';

/**
 * The scheduler's decisions, as a pure function of what it is told: the jobs'
 * schedule settings, the runs known, the task cap and the time. The runtime
 * (src/service) carries them out and asks again at `nextAt`, whenever a run
 * ends, and whenever a job or run changes. The rules are in docs/design.md
 * (§The scheduler).
 */

export const RUN_STATES = ['queued', 'running', 'succeeded', 'warning', 'failed', 'interrupted', 'stopped'] as const;
export type RunState = (typeof RUN_STATES)[number];
export const RUN_TRIGGERS = ['schedule', 'retry', 'manual', 'api', 'after', 'missed'] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

/** Runs the server queued by itself: bound by the window, retried, never queued twice. Manual and API runs are a person's. */
export const AUTOMATIC_TRIGGERS: ReadonlySet<RunTrigger> = new Set<RunTrigger>(['schedule', 'retry', 'after', 'missed']);

export const DEFAULT_MAX_TASKS = 4;

/** One job as the scheduler sees it: its settings as its file stores them (retries absent = DEFAULT_RETRIES), `after` as a key. */
export interface ScheduledJob extends ScheduleSettings {
  /** Unique on the server (the runtime's choice, e.g. repository and job name); runs name their job by it. */
  readonly key: string;
  /** The key of the job whose successful runs queue this one. */
  readonly after?: string | undefined;
  /** Disk tasks a run takes (the job's disks). */
  readonly tasks: number;
}

/** A run the scheduler is told of. Times are ms since the epoch. */
export interface KnownRun {
  readonly id: number;
  readonly job: string;
  readonly trigger: RunTrigger;
  /** 1 for a first try; a retry has the number after the run it retries. */
  readonly attempt: number;
  readonly state: RunState;
  readonly queuedAt: number;
  readonly startedAt?: number | null | undefined;
  readonly endedAt?: number | null | undefined;
  /** Disk tasks; absent = its job's. */
  readonly tasks?: number | undefined;
}

export interface ScheduleInput {
  readonly jobs: readonly ScheduledJob[];
  /** Every queued or running run, and at least each job's most recently ended run (more are harmless). */
  readonly runs: readonly KnownRun[];
  /** The `now` of the previous decision; at start-up, the time the server last saw (its last heartbeat). */
  readonly since: number;
  readonly now: number;
  /** First decision after a start: cron fires in (since, now) were missed while the server was down. */
  readonly startup?: boolean | undefined;
  /** Running disk tasks at most (default 4). */
  readonly maxTasks?: number | undefined;
  /** IANA zone schedules and windows are read in (default: the server's). */
  readonly timeZone?: string | undefined;
}

export interface RunToQueue {
  readonly job: string;
  readonly trigger: 'schedule' | 'missed' | 'retry' | 'after';
  readonly attempt: number;
  /** For a retry: the run it retries. */
  readonly retryOf: number | null;
  /** For schedule and missed: the cron fire it stands for (the latest one since the previous decision). */
  readonly fireAt: number | null;
  /** For after: the run of the other job whose end queued it. */
  readonly afterRun: number | null;
}

/** What became of a job's cron fires since the previous decision (the latest fire stands for them all). */
export interface FireNote {
  readonly job: string;
  /** The latest fire in (since, now]. */
  readonly fireAt: number;
  /** How many fires (since, now] held (at most FIRE_COUNT_LIMIT: more are counted as that many). */
  readonly count: number;
  /**
   * queued: a run is queued for it; coalesced: the job already had a queued or
   * running run, which stands for it; disabled: the job is disabled; missed-outside-window:
   * a fire missed while the server was down, dropped because the window is closed now.
   */
  readonly outcome: 'queued' | 'coalesced' | 'disabled' | 'missed-outside-window';
  /** For coalesced: the run that stands for it. */
  readonly runId?: number | undefined;
}

export interface ScheduleDecision {
  /** Runs to create now, state queued (then ask again: `nextAt` is `now`). */
  readonly queue: readonly RunToQueue[];
  /** Queued runs to start now, in this order. */
  readonly start: readonly number[];
  /** Running runs to stop cleanly (recorded as stopped): their job's window has closed. */
  readonly stop: readonly { readonly runId: number; readonly reason: 'window-closed' }[];
  readonly fires: readonly FireNote[];
  /** When to ask again at the latest (a run's end or a change of jobs is a reason to ask sooner); null: nothing is due by time. */
  readonly nextAt: number | null;
  /** Jobs whose settings cannot be read (a hand-edited job.json): the server queues none of their runs. */
  readonly problems: readonly { readonly job: string; readonly message: string }[];
}

export const FIRE_COUNT_LIMIT = 1000;

interface ParsedJob {
  readonly job: ScheduledJob;
  readonly cron: Cron | null;
  readonly window: TimeWindow | null;
  readonly retries: number;
  readonly retryDelayMs: number;
  /** False when its settings are unreadable or its `after` chain loops. */
  readonly usable: boolean;
}

const ENDED: ReadonlySet<RunState> = new Set<RunState>(['succeeded', 'warning', 'failed', 'interrupted', 'stopped']);

/** What to do at `input.now`. Pure: the same input always gives the same decision. */
export function decide(input: ScheduleInput): ScheduleDecision {
  const { now, since } = input;
  const tz = input.timeZone ?? localTimeZone();
  const maxTasks = input.maxTasks ?? DEFAULT_MAX_TASKS;
  if (!Number.isInteger(maxTasks) || maxTasks < 1)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--max-tasks must be a whole number ≥ 1, not ${maxTasks}`);
  const problems: { job: string; message: string }[] = [];
  const jobs = parseJobs(input.jobs, tz, problems);

  const active = new Map<string, KnownRun>();
  const latestEnded = new Map<string, KnownRun>();
  const latestQueued = new Map<string, KnownRun>();
  for (const r of input.runs) {
    if (r.state === 'queued' || r.state === 'running') {
      const a = active.get(r.job);
      if (a === undefined || a.state === 'queued') active.set(r.job, r); // a running run stands for the job before a queued one
    } else if (ENDED.has(r.state)) {
      const l = latestEnded.get(r.job);
      if (l === undefined || endOf(r) > endOf(l) || (endOf(r) === endOf(l) && r.id > l.id)) latestEnded.set(r.job, r);
    }
    const q = latestQueued.get(r.job);
    if (q === undefined || r.queuedAt > q.queuedAt || (r.queuedAt === q.queuedAt && r.id > q.id)) latestQueued.set(r.job, r);
  }

  const queue: RunToQueue[] = [];
  const fires: FireNote[] = [];
  const dueTimes: number[] = [];
  const queuedNow = new Set<string>();

  // Cron fires since the previous decision: one run stands for all of them.
  for (const p of jobs.values()) {
    if (p.cron === null || !p.usable) continue;
    const seen = firesBetween(p.cron, since, now);
    const next = nextRunAfter(p.cron, now);
    if (next !== null && p.job.disabled !== true) dueTimes.push(next);
    if (seen === null) continue;
    const note = { job: p.job.key, fireAt: seen.latest, count: seen.count };
    const missed = input.startup === true && seen.latest < now;
    const holder = active.get(p.job.key);
    if (p.job.disabled === true) fires.push({ ...note, outcome: 'disabled' });
    else if (holder !== undefined) fires.push({ ...note, outcome: 'coalesced', runId: holder.id });
    else if (missed && p.window !== null && !windowOpen(p.window, now, tz)) fires.push({ ...note, outcome: 'missed-outside-window' });
    else {
      fires.push({ ...note, outcome: 'queued' });
      queue.push({ job: p.job.key, trigger: missed ? 'missed' : 'schedule', attempt: 1, retryOf: null, fireAt: seen.latest, afterRun: null });
      queuedNow.add(p.job.key);
    }
  }

  // Retries: the job's latest run failed (or was cut short by a server's end), it was queued by the server, and tries are left.
  for (const p of jobs.values()) {
    const key = p.job.key;
    if (!p.usable || p.job.disabled === true || queuedNow.has(key) || active.has(key)) continue;
    const last = latestEnded.get(key);
    if (last === undefined || (last.state !== 'failed' && last.state !== 'interrupted') || !AUTOMATIC_TRIGGERS.has(last.trigger)) continue;
    if (last.attempt > p.retries || latestQueued.get(key) !== last) continue;
    const due = endOf(last) + p.retryDelayMs;
    if (due > now) {
      dueTimes.push(due);
      continue;
    }
    queue.push({ job: key, trigger: 'retry', attempt: last.attempt + 1, retryOf: last.id, fireAt: null, afterRun: null });
    queuedNow.add(key);
  }

  // Chaining: the other job's latest run ended succeeded or warning, and this job has queued no run since.
  for (const p of jobs.values()) {
    const key = p.job.key;
    if (!p.usable || p.job.after === undefined || p.job.disabled === true || queuedNow.has(key) || active.has(key)) continue;
    const upstream = latestEnded.get(p.job.after);
    if (upstream === undefined || (upstream.state !== 'succeeded' && upstream.state !== 'warning')) continue;
    const mine = latestQueued.get(key);
    if (mine !== undefined && mine.queuedAt >= endOf(upstream)) continue;
    queue.push({ job: key, trigger: 'after', attempt: 1, retryOf: null, fireAt: null, afterRun: upstream.id });
    queuedNow.add(key);
  }

  // Starts: queued runs in queue order while the cap allows; a run waiting for its window lets the next one go first.
  const slots = (r: KnownRun): number => Math.min(maxTasks, Math.max(1, r.tasks ?? jobs.get(r.job)?.job.tasks ?? 1));
  const running = input.runs.filter((r) => r.state === 'running');
  let used = running.reduce((sum, r) => sum + slots(r), 0);
  const runningJobs = new Set(running.map((r) => r.job));
  const start: number[] = [];
  const waiting = input.runs.filter((r) => r.state === 'queued').sort((a, b) => a.queuedAt - b.queuedAt || a.id - b.id);
  for (const r of waiting) {
    const w = AUTOMATIC_TRIGGERS.has(r.trigger) ? (jobs.get(r.job)?.window ?? null) : null;
    if (w !== null && !windowOpen(w, now, tz)) {
      dueTimes.push(nextWindowOpen(w, now, tz));
      continue;
    }
    if (runningJobs.has(r.job)) continue; // one run of a job at a time: it starts when the other ends
    if (used + slots(r) > maxTasks) break; // strict queue order: no later run overtakes one waiting for room
    used += slots(r);
    runningJobs.add(r.job);
    start.push(r.id);
    if (w !== null) dueTimes.push(nextWindowClose(w, now, tz)); // it is stopped then, if still going
  }

  // Stops: a run the server queued does not go on past its window.
  const stop: { runId: number; reason: 'window-closed' }[] = [];
  for (const r of running) {
    const w = AUTOMATIC_TRIGGERS.has(r.trigger) ? (jobs.get(r.job)?.window ?? null) : null;
    if (w === null) continue;
    if (windowOpen(w, now, tz)) dueTimes.push(nextWindowClose(w, now, tz));
    else stop.push({ runId: r.id, reason: 'window-closed' });
  }

  const nextAt = queue.length > 0 ? now : dueTimes.length > 0 ? Math.min(...dueTimes) : null;
  return { queue, start, stop, fires, nextAt, problems };
}

function endOf(r: KnownRun): number {
  return r.endedAt ?? r.startedAt ?? r.queuedAt;
}

/** The latest fire in (since, now] and how many there were; null if none. */
function firesBetween(cron: Cron, since: number, now: number): { latest: number; count: number } | null {
  let at = nextRunAfter(cron, since);
  if (at === null || at > now) return null;
  let latest = at;
  let count = 0;
  while (at !== null && at <= now) {
    latest = at;
    count++;
    if (count >= FIRE_COUNT_LIMIT) {
      // A long outage of a frequent schedule: find the latest fire from the other end.
      const last = cron.previousRuns(1, new Date(now + 1))[0];
      if (last !== undefined && last.getTime() <= now && last.getTime() > latest) latest = last.getTime();
      break;
    }
    at = nextRunAfter(cron, at);
  }
  return { latest, count };
}

function parseJobs(list: readonly ScheduledJob[], tz: string, problems: { job: string; message: string }[]): Map<string, ParsedJob> {
  const out = new Map<string, ParsedJob>();
  for (const job of list) {
    try {
      out.set(job.key, {
        job,
        cron: job.schedule === undefined ? null : parseCron(job.schedule, 'schedule', tz),
        window: job.window === undefined ? null : parseWindow(job.window, 'window'),
        retries: job.retries ?? DEFAULT_RETRIES,
        retryDelayMs: parseDuration(job.retryDelay ?? DEFAULT_RETRY_DELAY, 'retryDelay'),
        usable: true,
      });
    } catch (err) {
      problems.push({ job: job.key, message: (err as Error).message });
      out.set(job.key, { job, cron: null, window: null, retries: 0, retryDelayMs: 0, usable: false });
    }
  }
  // A loop of `after` (job.json edited by hand: job set refuses one) would run its jobs forever: none of the loop's jobs is scheduled.
  for (const p of out.values()) {
    const seen = new Set<string>([p.job.key]);
    for (let next = p.job.after; next !== undefined && !seen.has(next); next = out.get(next)?.job.after) seen.add(next);
    const last = [...seen].at(-1)!;
    if (out.get(last)?.job.after === p.job.key) {
      problems.push({ job: p.job.key, message: `its --after chain loops (${[...seen, p.job.key].join(' → ')})` });
      out.set(p.job.key, { ...p, usable: false });
    }
  }
  return out;
}
