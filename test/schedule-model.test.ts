import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTOMATIC_TRIGGERS, FIRE_COUNT_LIMIT, decide, type KnownRun, type ScheduledJob } from '../src/schedule/index.js';
import { prng } from '../src/testing/prng.js';
import { DAY, HOUR, MIN, Simulation, iso, type DecisionRecord, type SimRun } from './schedule-sim.js';

/**
 * Model tests of the scheduler (src/schedule): a simulated month of a
 * server's life, checked at every step against oracles written here (fire
 * times and windows computed from UTC arithmetic, not by croner), and exact
 * scenarios.
 */

const JUNE = Date.parse('2026-06-01T00:00:00Z'); // a Monday

/** The month's jobs, with an oracle of when each one's schedule fires (t: whole seconds, UTC). */
const MONTH_JOBS: { job: ScheduledJob; fires: (t: Date) => boolean }[] = [
  {
    // Window ends off the quarter hours: no other job's fire happens to wake the scheduler when they close.
    job: { key: 'nightly', schedule: '0 22 * * *', window: '22:00-05:53', retries: 3, retryDelay: '10m', tasks: 2 },
    fires: (t) => t.getUTCHours() === 22 && t.getUTCMinutes() === 0,
  },
  {
    job: { key: 'weekday-2h', schedule: '0 */2 * * 1-5', retries: 2, retryDelay: '30m', tasks: 1 },
    fires: (t) => t.getUTCMinutes() === 0 && t.getUTCHours() % 2 === 0 && t.getUTCDay() >= 1 && t.getUTCDay() <= 5,
  },
  { job: { key: 'after-nightly', after: 'nightly', retries: 1, retryDelay: '5m', tasks: 3 }, fires: () => false },
  {
    job: { key: 'office-hourly', schedule: '30 * * * *', window: '08:05-17:41', retries: 1, retryDelay: '1h', tasks: 1 },
    fires: (t) => t.getUTCMinutes() === 30,
  },
  { job: { key: 'quarter', schedule: '*/15 * * * *', retries: 0, tasks: 2 }, fires: (t) => t.getUTCMinutes() % 15 === 0 },
  { job: { key: 'off', schedule: '0 * * * *', disabled: true, tasks: 1 }, fires: (t) => t.getUTCMinutes() === 0 },
  { job: { key: 'huge', schedule: '0 3 * * 0', tasks: 9 }, fires: (t) => t.getUTCDay() === 0 && t.getUTCHours() === 3 && t.getUTCMinutes() === 0 },
];
const MAX_TASKS = 4;

function windowOpenUtc(window: string | undefined, at: number): boolean {
  if (window === undefined) return true;
  const [start, end] = window.split('-').map((hm) => Number(hm.slice(0, 2)) * 60 + Number(hm.slice(3))) as [number, number];
  const m = Math.floor((((at % DAY) + DAY) % DAY) / MIN);
  return start < end ? m >= start && m < end : m >= start || m < end;
}

/** Whether the window closes at some time in (from, to). */
function windowClosesWithin(window: string | undefined, from: number, to: number): boolean {
  if (window === undefined) return false;
  const end = Number(window.slice(6, 8)) * 60 + Number(window.slice(9, 11));
  for (let day = Math.floor(from / DAY) * DAY; day < to; day += DAY) {
    const close = day + end * MIN;
    if (close > from && close < to) return true;
  }
  return false;
}

function oracleFires(fires: (t: Date) => boolean, from: number, to: number): number[] {
  const out: number[] = [];
  for (let t = Math.ceil(from / MIN) * MIN; t <= to; t += MIN) if (fires(new Date(t))) out.push(t);
  return out;
}

const jobOf = (key: string): ScheduledJob => MONTH_JOBS.find((j) => j.job.key === key)!.job;
const slots = (r: { tasks: number }): number => Math.min(MAX_TASKS, r.tasks);

/** assert.ok with a message made only on failure (the checks run hundreds of thousands of times). */
function check(ok: boolean, message: () => string): asserts ok {
  if (!ok) assert.fail(message());
}

/** The invariants that hold after every decision the server carries out. */
function checkStep(sim: Simulation, rec: DecisionRecord): void {
  const { now } = rec;
  const running = sim.runs.filter((r) => r.state === 'running');
  const used = running.reduce((sum, r) => sum + slots(r), 0);
  check(used <= MAX_TASKS, () => `${iso(now)}: ${used} disk tasks run, the cap is ${MAX_TASKS}`);
  for (const r of running)
    if (AUTOMATIC_TRIGGERS.has(r.trigger))
      check(windowOpenUtc(jobOf(r.job).window, now), () => `${iso(now)}: run ${r.id} of ${r.job} runs outside its window ${jobOf(r.job).window}`);
  const active = sim.active().filter((r) => AUTOMATIC_TRIGGERS.has(r.trigger));
  assert.equal(new Set(active.map((r) => r.job)).size, active.length, `${iso(now)}: a job has two queued or running runs`);
  for (const r of active) assert.notEqual(jobOf(r.job).disabled, true, `${iso(now)}: disabled job ${r.job} has a run`);
  // Work-conserving in queue order: the first queued run that may start (window open, its job idle) does not fit.
  const runningJobs = new Set(running.map((r) => r.job));
  const first = sim.runs.filter((r) => r.state === 'queued').find((r) => windowOpenUtc(jobOf(r.job).window, now) && !runningJobs.has(r.job));
  // (Runs a decision queues start when it is asked again at once, as do runs waiting for the room of runs it stops.)
  if (first !== undefined && rec.decision.queue.length === 0 && rec.decision.stop.length === 0)
    check(used + slots(first) > MAX_TASKS, () => `${iso(now)}: run ${first.id} could start but waits (${used} tasks run)`);
  // Fires are noted when they happen (a missed one at the start-up after them).
  for (const note of rec.decision.fires) {
    check(note.fireAt > rec.since && note.fireAt <= now, () => `${iso(now)}: fire ${iso(note.fireAt)} of ${note.job} is outside (since, now]`);
    // (A disabled job's fires wake no one: they are noted when the scheduler next wakes.)
    if (!rec.startup && note.outcome !== 'disabled')
      check(note.fireAt === now, () => `${note.job}: the fire at ${iso(note.fireAt)} was seen late, at ${iso(now)}`);
  }
}

function checkMonth(sim: Simulation, end: number, downtimes: readonly { at: number; downMs: number }[], seed: number): void {
  const ctx = `seed ${seed}`;
  const down = (t: number): boolean => downtimes.some((d) => t > d.at && t <= d.at + d.downMs);
  // Every cron fire is accounted for, once: each decision notes exactly the fires in its (since, now].
  for (const { job, fires } of MONTH_JOBS) {
    if (job.schedule === undefined) continue;
    const all = oracleFires(fires, JUNE - DAY, end);
    let noted = 0;
    for (const rec of sim.decisions) {
      const inside = all.filter((t) => t > rec.since && t <= rec.now);
      const note = rec.decision.fires.find((n) => n.job === job.key);
      if (inside.length === 0) {
        assert.equal(note, undefined, `${ctx}: ${job.key} noted a fire at ${iso(rec.now)} that its schedule does not have`);
        continue;
      }
      check(note !== undefined, () => `${ctx}: ${job.key}'s fire at ${iso(inside.at(-1)!)} is not accounted for`);
      assert.equal(note.count, inside.length, `${ctx}: ${job.key} at ${iso(rec.now)}`);
      assert.equal(note.fireAt, inside.at(-1));
      noted += note.count;
      const held = rec.activeBefore.find((r) => r.job === job.key && AUTOMATIC_TRIGGERS.has(r.trigger));
      const queued = rec.decision.queue.find((q) => q.job === job.key);
      if (job.disabled === true) assert.equal(note.outcome, 'disabled');
      else if (held !== undefined) assert.deepEqual([note.outcome, note.runId], ['coalesced', held.id], `${ctx}: ${job.key} at ${iso(rec.now)}`);
      else if (rec.startup && note.fireAt < rec.now && !windowOpenUtc(job.window, rec.now)) assert.equal(note.outcome, 'missed-outside-window');
      else {
        assert.equal(note.outcome, 'queued', `${ctx}: ${job.key} at ${iso(rec.now)}`);
        assert.deepEqual([queued?.trigger, queued?.fireAt], [rec.startup && note.fireAt < rec.now ? 'missed' : 'schedule', note.fireAt]);
      }
    }
    assert.equal(noted, all.filter((t) => t > JUNE).length, `${ctx}: ${job.key}: fires noted`);
  }
  const runsOf = (job: string): SimRun[] => sim.runs.filter((r) => r.job === job);
  for (const r of sim.runs) {
    const job = jobOf(r.job);
    const started = r.startedAt;
    if (started !== null) {
      check(windowOpenUtc(job.window, started), () => `${ctx}: run ${r.id} started at ${iso(started)}, outside ${job.window}`);
      check(!windowClosesWithin(job.window, started, r.endedAt ?? end), () => `${ctx}: run ${r.id} ran past its window's end`);
      if (r.state === 'stopped') check(!windowOpenUtc(job.window, r.endedAt!), () => `${ctx}: run ${r.id} stopped inside its window`);
    }
    // Retries: of a failed or interrupted run, numbered, bounded, spaced.
    if (r.trigger === 'retry') {
      const p = sim.byId(r.retryOf!);
      check(p.state === 'failed' || p.state === 'interrupted', () => `${ctx}: run ${r.id} retries a run that ${p.state}`);
      assert.equal(r.attempt, p.attempt + 1);
      check(r.attempt <= (job.retries ?? 3) + 1, () => `${ctx}: run ${r.id} is try ${r.attempt} of ${job.key}`);
      const delay = { '10m': 10, '30m': 30, '5m': 5, '1h': 60 }[job.retryDelay ?? '10m']! * MIN;
      check(r.queuedAt >= p.endedAt! + delay, () => `${ctx}: run ${r.id} retried ${iso(r.queuedAt)}, before ${iso(p.endedAt! + delay)}`);
    }
    // A failed run with tries left is retried when its delay is over, unless another run of the job came first.
    if ((r.state === 'failed' || r.state === 'interrupted') && r.attempt <= (job.retries ?? 3) && job.disabled !== true) {
      const due = r.endedAt! + { '10m': 10, '30m': 30, '5m': 5, '1h': 60 }[job.retryDelay ?? '10m']! * MIN;
      const next = runsOf(r.job).find((x) => x.id > r.id);
      if (due <= end && !down(due))
        check(
          next !== undefined && next.queuedAt <= due,
          () => `${ctx}: run ${r.id} of ${r.job} (${r.state} at ${iso(r.endedAt!)}) was not retried at ${iso(due)}`,
        );
      if (next?.trigger === 'retry' && !down(due)) assert.equal(next.queuedAt, due, `${ctx}: retry of run ${r.id} late`);
    }
    if (r.trigger === 'after') {
      const u = sim.byId(r.afterRun!);
      assert.equal(u.job, job.after);
      check(u.state === 'succeeded' || u.state === 'warning', () => `${ctx}: run ${r.id} follows a run that ${u.state}`);
      assert.ok(u.endedAt! <= r.queuedAt);
      check(
        !runsOf(r.job).some((x) => x.id !== r.id && x.queuedAt >= u.endedAt! && x.queuedAt < r.queuedAt),
        () => `${ctx}: run ${r.id} queued twice after ${u.id}`,
      );
    }
  }
  // Chaining: a success of the first job queues the second at once when the second is idle.
  for (const { job } of MONTH_JOBS) {
    if (job.after === undefined) continue;
    for (const u of runsOf(job.after)) {
      if (u.state !== 'succeeded' && u.state !== 'warning') continue;
      const busy = runsOf(job.key).some((x) => x.queuedAt <= u.endedAt! && (x.endedAt ?? Infinity) > u.endedAt!);
      if (!busy)
        assert.ok(
          runsOf(job.key).some((x) => x.queuedAt === u.endedAt),
          `${ctx}: ${job.key} was not queued when run ${u.id} of ${job.after} ended at ${iso(u.endedAt!)}`,
        );
    }
  }
}

for (const seed of [1, 2]) {
  test(`a simulated month (seed ${seed}): cap, windows, retries, chaining, no double queueing, every fire accounted for, crashes`, () => {
    const rand = prng(seed);
    const end = JUNE + 30 * DAY;
    const crashes = [0, 1, 2]
      .map(() => ({ at: JUNE + Math.floor(rand() * 28 * DAY), downMs: (30 + Math.floor(rand() * 600)) * MIN }))
      .sort((a, b) => a.at - b.at);
    const sim = new Simulation({
      jobs: MONTH_JOBS.map((j) => j.job),
      start: JUNE,
      maxTasks: MAX_TASKS,
      timeZone: 'UTC',
      rand,
      runOutcome: (job, r) => {
        const longest = job === 'quarter' ? 40 * MIN : job === 'nightly' ? 9 * HOUR : 4 * HOUR;
        const x = r();
        return { ms: 30_000 + Math.floor(r() * r() * longest), result: x < 0.2 ? 'failed' : x < 0.3 ? 'warning' : 'succeeded' };
      },
      check: checkStep,
    });
    sim.runUntil(end, crashes);
    checkMonth(sim, end, crashes, seed);
    // The month exercised every rule.
    const count = (f: (r: SimRun) => boolean): number => sim.runs.filter(f).length;
    for (const trigger of ['schedule', 'retry', 'after', 'missed'] as const)
      assert.ok(count((r) => r.trigger === trigger) > 0, `seed ${seed}: no ${trigger} run`);
    assert.ok(count((r) => r.state === 'stopped') > 0, `seed ${seed}: no run stopped by its window`);
    assert.ok(count((r) => r.job === 'huge' && r.startedAt !== null) > 0, `seed ${seed}: the 9-disk job never ran`);
    assert.ok(
      sim.decisions.some((d) => d.decision.fires.some((n) => n.outcome === 'coalesced')),
      `seed ${seed}: no fire was coalesced`,
    );
  });
}

/** A simulation whose runs take the given lengths and results, in the order they start. */
function scripted(jobs: ScheduledJob[], start: number, script: { ms: number; result: 'succeeded' | 'warning' | 'failed' }[], timeZone = 'UTC'): Simulation {
  let n = 0;
  return new Simulation({
    jobs,
    start,
    maxTasks: MAX_TASKS,
    timeZone,
    rand: prng(0),
    runOutcome: () => {
      const next = script[n++];
      assert.ok(next !== undefined, 'more runs started than the scenario expects');
      return next;
    },
  });
}

const at = (text: string): number => Date.parse(text);
const rows = (sim: Simulation): string[] =>
  sim.runs.map((r) =>
    [r.job, r.trigger, r.attempt, r.state, iso(r.queuedAt), r.startedAt === null ? '-' : iso(r.startedAt), r.endedAt === null ? '-' : iso(r.endedAt)].join(' '),
  );

test('daily at 22:00 in the window 22:00-06:00: stopped when the window closes, a retry due outside the window waits for it', () => {
  const jobs: ScheduledJob[] = [{ key: 'nightly', schedule: '0 22 * * *', window: '22:00-06:00', retries: 1, retryDelay: '10m', tasks: 1 }];
  const sim = scripted(jobs, at('2026-06-01T12:00:00Z'), [
    { ms: 9 * HOUR, result: 'succeeded' }, // Monday's run is still going at 06:00
    { ms: 7 * HOUR + 55 * MIN, result: 'failed' }, // Tuesday's fails at 05:55: its retry is due at 06:05, outside the window
    { ms: HOUR, result: 'succeeded' }, // the retry, at 22:00 on Wednesday
    { ms: HOUR, result: 'succeeded' },
  ]);
  sim.runUntil(at('2026-06-05T00:00:00Z'));
  assert.deepEqual(rows(sim), [
    'nightly schedule 1 stopped 2026-06-01T22:00:00.000Z 2026-06-01T22:00:00.000Z 2026-06-02T06:00:00.000Z',
    'nightly schedule 1 failed 2026-06-02T22:00:00.000Z 2026-06-02T22:00:00.000Z 2026-06-03T05:55:00.000Z',
    'nightly retry 2 succeeded 2026-06-03T06:05:00.000Z 2026-06-03T22:00:00.000Z 2026-06-03T23:00:00.000Z',
    'nightly schedule 1 succeeded 2026-06-04T22:00:00.000Z 2026-06-04T22:00:00.000Z 2026-06-04T23:00:00.000Z',
  ]);
  assert.deepEqual(sim.decisions[0]!.decision.nextAt, at('2026-06-01T22:00:00Z'), 'the first question asks again at the first fire');
  assert.deepEqual(sim.byId(1).state, 'stopped');
  assert.equal(sim.decisions.find((d) => d.decision.stop.length > 0)?.now, at('2026-06-02T06:00:00Z'));
  // Wednesday's fire finds the retry waiting for the window: the retry stands for it.
  const wednesday = sim.decisions.find((d) => d.now === at('2026-06-03T22:00:00Z') && d.decision.fires.length > 0)!;
  assert.deepEqual(wednesday.decision.fires, [{ job: 'nightly', fireAt: at('2026-06-03T22:00:00Z'), count: 1, outcome: 'coalesced', runId: 3 }]);
  assert.deepEqual(wednesday.decision.start, [3]);
  // In a time zone: 22:00 in Berlin is 20:00 UTC in summer.
  const berlin = decide({ jobs, runs: [], since: at('2026-06-01T12:00:00Z'), now: at('2026-06-01T12:00:00Z'), timeZone: 'Europe/Berlin' });
  assert.equal(berlin.nextAt, at('2026-06-01T20:00:00Z'));
});

test('every 2 hours on weekdays: twelve runs a weekday, none at the weekend', () => {
  const jobs: ScheduledJob[] = [{ key: 'office', schedule: '0 */2 * * 1-5', tasks: 1 }];
  const sim = scripted(
    jobs,
    at('2026-06-05T19:00:00Z'),
    Array.from({ length: 40 }, () => ({ ms: 10 * MIN, result: 'succeeded' as const })),
  );
  sim.runUntil(at('2026-06-09T01:00:00Z'));
  const expected = [
    '2026-06-05T20:00:00.000Z',
    '2026-06-05T22:00:00.000Z',
    ...Array.from({ length: 12 }, (_, i) => `2026-06-08T${String(2 * i).padStart(2, '0')}:00:00.000Z`),
    '2026-06-09T00:00:00.000Z',
  ];
  assert.deepEqual(
    sim.runs.map((r) => iso(r.queuedAt)),
    expected,
  );
  assert.ok(sim.runs.every((r) => r.trigger === 'schedule' && r.startedAt === r.queuedAt && r.state === 'succeeded'));
  // After Friday's last run the scheduler sleeps until Monday.
  const fridayEnd = sim.decisions.find((d) => d.now === at('2026-06-05T22:10:00Z'))!;
  assert.equal(fridayEnd.decision.nextAt, at('2026-06-08T00:00:00Z'));
});

test('a seconds-level schedule (*/5 * * * * *): every fire in a minute is queued or stands behind the run still going', () => {
  const jobs: ScheduledJob[] = [{ key: 'fast', schedule: '*/5 * * * * *', tasks: 1 }];
  const t0 = at('2026-06-01T00:00:00Z');
  const sim = scripted(
    jobs,
    t0 - 500,
    Array.from({ length: 12 }, () => ({ ms: 7000, result: 'succeeded' as const })),
  );
  sim.runUntil(t0 + 59_000);
  const notes = sim.decisions.flatMap((d) => d.decision.fires);
  assert.deepEqual(
    notes.map((n) => [(n.fireAt - t0) / 1000, n.outcome]),
    Array.from({ length: 12 }, (_, i) => [5 * i, i % 2 === 0 ? 'queued' : 'coalesced']),
  );
  assert.deepEqual(
    sim.runs.map((r) => [(r.startedAt! - t0) / 1000, (r.endedAt! - t0) / 1000]),
    [0, 10, 20, 30, 40, 50].map((s) => [s, s + 7]),
  );
});

test('missed fires (the server was down) run once at start-up if the window is still open, else wait for the next fire', () => {
  const jobs: ScheduledJob[] = [
    { key: 'nightly', schedule: '0 22 * * *', window: '22:00-06:00', tasks: 1 },
    { key: 'quarter', schedule: '*/15 * * * *', tasks: 1 },
  ];
  const lastSeen = at('2026-06-01T21:00:00Z');
  const early = decide({ jobs, runs: [], since: lastSeen, now: at('2026-06-02T03:07:00Z'), startup: true, timeZone: 'UTC' });
  assert.deepEqual(early.fires, [
    { job: 'nightly', fireAt: at('2026-06-01T22:00:00Z'), count: 1, outcome: 'queued' },
    { job: 'quarter', fireAt: at('2026-06-02T03:00:00Z'), count: 24, outcome: 'queued' },
  ]);
  assert.deepEqual(
    early.queue.map((q) => [q.job, q.trigger, q.attempt, q.fireAt === null ? null : iso(q.fireAt)]),
    [
      ['nightly', 'missed', 1, '2026-06-01T22:00:00.000Z'],
      ['quarter', 'missed', 1, '2026-06-02T03:00:00.000Z'],
    ],
  );
  assert.equal(early.nextAt, at('2026-06-02T03:07:00Z'), 'asks again at once to start what it queued');
  // Started after 06:00: the nightly fire is dropped (its window closed), the next one is at 22:00.
  const late = decide({ jobs: jobs.slice(0, 1), runs: [], since: lastSeen, now: at('2026-06-02T07:00:00Z'), startup: true, timeZone: 'UTC' });
  assert.deepEqual(late.fires, [{ job: 'nightly', fireAt: at('2026-06-01T22:00:00Z'), count: 1, outcome: 'missed-outside-window' }]);
  assert.deepEqual([late.queue, late.nextAt], [[], at('2026-06-02T22:00:00Z')]);
  // A day down with a schedule of every second: the fires are counted up to FIRE_COUNT_LIMIT, the latest is found all the same.
  const day = decide({
    jobs: [{ key: 'sec', schedule: '* * * * * *', tasks: 1 }],
    runs: [],
    since: lastSeen,
    now: lastSeen + DAY + 500,
    startup: true,
    timeZone: 'UTC',
  });
  assert.deepEqual(day.fires, [{ job: 'sec', fireAt: lastSeen + DAY, count: FIRE_COUNT_LIMIT, outcome: 'queued' }]);
  // A run the crash interrupted is retried after the delay, from the start-up on.
  const restart = at('2026-06-02T07:00:00Z');
  const interrupted: KnownRun = { id: 7, job: 'quarter', trigger: 'schedule', attempt: 1, state: 'interrupted', queuedAt: lastSeen, endedAt: restart };
  const retry = decide({ jobs: [{ key: 'quarter', tasks: 1 }], runs: [interrupted], since: lastSeen, now: restart, startup: true, timeZone: 'UTC' });
  assert.deepEqual([retry.queue, retry.nextAt], [[], restart + 10 * MIN]);
  const due = decide({ jobs: [{ key: 'quarter', tasks: 1 }], runs: [interrupted], since: restart, now: restart + 10 * MIN, timeZone: 'UTC' });
  assert.deepEqual(due.queue, [{ job: 'quarter', trigger: 'retry', attempt: 2, retryOf: 7, fireAt: null, afterRun: null }]);
});

test('the task cap: queued runs start in queue order, a run with more disks than the cap starts alone, a run waiting for its window lets others by', () => {
  const now = at('2026-06-01T12:00:00Z');
  const jobs: ScheduledJob[] = [
    { key: 'a', tasks: 2 },
    { key: 'b', tasks: 3 },
    { key: 'c', tasks: 1 },
    { key: 'wide', tasks: 6 },
    { key: 'night', window: '22:00-06:00', tasks: 1 },
  ];
  const queued = (id: number, job: string, trigger: KnownRun['trigger'] = 'schedule'): KnownRun => ({
    id,
    job,
    trigger,
    attempt: 1,
    state: 'queued',
    queuedAt: now - 1000 + id,
  });
  const ask = (runs: KnownRun[], maxTasks = 4): readonly number[] => decide({ jobs, runs, since: now, now, maxTasks, timeZone: 'UTC' }).start;
  // b does not fit beside a, and c (which would) does not overtake it.
  assert.deepEqual(ask([queued(1, 'a'), queued(2, 'b'), queued(3, 'c')]), [1]);
  assert.deepEqual(ask([queued(1, 'a'), queued(2, 'b'), queued(3, 'c')], 6), [1, 2, 3]);
  assert.deepEqual(ask([queued(1, 'a'), queued(2, 'b'), queued(3, 'c')], 5), [1, 2]);
  assert.deepEqual(ask([queued(1, 'a'), queued(3, 'c')]), [1, 3]);
  // Six disks, cap 4: it starts when nothing runs, and takes the whole cap.
  assert.deepEqual(ask([queued(4, 'wide'), queued(5, 'c')]), [4]);
  assert.deepEqual(ask([{ ...queued(1, 'a'), state: 'running' }, queued(4, 'wide'), queued(5, 'c')]), []);
  // The night job's run waits for 22:00 without holding up the queue; a run asked for by hand is not bound by the window.
  const d = decide({ jobs, runs: [queued(1, 'night'), queued(2, 'c'), queued(3, 'night', 'manual')], since: now, now, timeZone: 'UTC' });
  assert.deepEqual([d.start, d.nextAt], [[2, 3], at('2026-06-01T22:00:00Z')]);
  // One run of a job at a time: a second queued run of a running job waits for it.
  assert.deepEqual(ask([{ ...queued(1, 'c', 'manual'), state: 'running' }, queued(2, 'c')]), []);
});

test('chaining, disabled jobs and unreadable settings', () => {
  const now = at('2026-06-01T12:30:00Z');
  const ended = (id: number, job: string, state: KnownRun['state'], endedAt: number, trigger: KnownRun['trigger'] = 'schedule'): KnownRun => ({
    id,
    job,
    trigger,
    attempt: 1,
    state,
    queuedAt: endedAt - HOUR,
    startedAt: endedAt - HOUR,
    endedAt,
  });
  const jobs: ScheduledJob[] = [
    { key: 'db', schedule: '0 * * * *', tasks: 1 },
    { key: 'app', after: 'db', tasks: 1 },
    { key: 'off', after: 'db', disabled: true, schedule: '0 * * * *', tasks: 1 },
  ];
  const ask = (runs: KnownRun[]) => decide({ jobs, runs, since: now - MIN, now, timeZone: 'UTC' });
  assert.deepEqual(ask([ended(1, 'db', 'warning', now)]).queue, [{ job: 'app', trigger: 'after', attempt: 1, retryOf: null, fireAt: null, afterRun: 1 }]);
  const failed = ask([ended(1, 'db', 'failed', now)]);
  assert.deepEqual([failed.queue, failed.nextAt], [[], now + 10 * MIN], 'a failed run is retried after the delay; nothing follows it');
  assert.deepEqual(
    ask([ended(1, 'db', 'succeeded', now - 5 * MIN), { ...ended(2, 'app', 'succeeded', now - MIN, 'after'), queuedAt: now - 5 * MIN }]).queue,
    [],
  );
  assert.deepEqual(
    ask([ended(1, 'db', 'succeeded', now, 'manual')]).queue.map((q) => q.job),
    ['app'],
    'a run asked for by hand is followed too',
  );
  assert.deepEqual(ask([ended(1, 'db', 'failed', now, 'manual')]).queue, [], 'a run asked for by hand is not retried');
  const hourly = decide({ jobs, runs: [], since: now - MIN, now: at('2026-06-01T13:00:00Z'), timeZone: 'UTC' });
  assert.deepEqual(
    hourly.fires.map((n) => [n.job, n.outcome]),
    [
      ['db', 'queued'],
      ['off', 'disabled'],
    ],
  );
  const broken = decide({
    jobs: [
      { key: 'bad-cron', schedule: '61 * * * *', tasks: 1 },
      { key: 'x', after: 'y', tasks: 1 },
      { key: 'y', after: 'x', tasks: 1 },
      { key: 'z', after: 'x', tasks: 1 },
    ],
    runs: [ended(1, 'x', 'succeeded', now), ended(2, 'y', 'succeeded', now)],
    since: now - DAY,
    now,
    timeZone: 'UTC',
  });
  assert.deepEqual(
    broken.problems.map((p) => p.job),
    ['bad-cron', 'x', 'y'],
  );
  assert.deepEqual(
    broken.queue.map((q) => q.job),
    ['z'],
    'a job after a loop still follows it',
  );
});

test('daylight saving time (Europe/Berlin): a fire in the spring gap runs once after it, a fire in the repeated autumn hour runs once', () => {
  const jobs: ScheduledJob[] = [{ key: 'night', schedule: '30 2 * * *', tasks: 1 }];
  const firesFrom = (from: string, days: number): string[] => {
    const out: string[] = [];
    let since = at(from);
    for (let now = since; now < at(from) + days * DAY;) {
      const d = decide({ jobs, runs: [], since, now, timeZone: 'Europe/Berlin' });
      out.push(...d.fires.map((n) => `${iso(n.fireAt)}x${n.count}`));
      since = now;
      now = d.nextAt!;
    }
    return out;
  };
  // 29 March 2026: 02:00-03:00 does not exist; the fire comes at 03:00 (01:00 UTC), once.
  assert.deepEqual(firesFrom('2026-03-28T12:00:00Z', 2), ['2026-03-29T01:00:00.000Zx1', '2026-03-30T00:30:00.000Zx1']);
  // 25 October 2026: 02:30 happens twice; the job runs at the first.
  assert.deepEqual(firesFrom('2026-10-24T12:00:00Z', 2), ['2026-10-25T00:30:00.000Zx1', '2026-10-26T01:30:00.000Zx1']);
});
