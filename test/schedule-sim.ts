/**
 * A simulated server for the scheduler's model tests: a fake clock that
 * steps to the scheduler's own "ask me next at" times and to the ends of
 * runs, runs that take random times and fail at random (seeded), and server
 * crashes with restarts. Every decision is recorded with the state it was
 * made in, for the invariant checks in schedule-model.test.ts.
 */
import assert from 'node:assert/strict';
import { decide, type KnownRun, type RunState, type RunTrigger, type ScheduleDecision, type ScheduledJob } from '../src/schedule/index.js';

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;

export interface SimRun {
  id: number;
  job: string;
  trigger: RunTrigger;
  attempt: number;
  retryOf: number | null;
  afterRun: number | null;
  fireAt: number | null;
  state: RunState;
  queuedAt: number;
  startedAt: number | null;
  endedAt: number | null;
  tasks: number;
  /** When a running run will end by itself, and how. */
  plannedEnd: number | null;
  plannedResult: 'succeeded' | 'warning' | 'failed';
}

export interface DecisionRecord {
  since: number;
  now: number;
  startup: boolean;
  decision: ScheduleDecision;
  /** Runs queued or running when the decision was asked for (copies). */
  activeBefore: SimRun[];
}

export interface SimOptions {
  jobs: ScheduledJob[];
  start: number;
  maxTasks: number;
  timeZone: string;
  rand: () => number;
  /** A run's length and result when it starts. */
  runOutcome: (job: string, rand: () => number) => { ms: number; result: 'succeeded' | 'warning' | 'failed' };
  /** Called after every decision is applied, with the simulation in its new state. */
  check?: (sim: Simulation, record: DecisionRecord) => void;
}

export class Simulation {
  readonly runs: SimRun[] = [];
  readonly decisions: DecisionRecord[] = [];
  now: number;
  private since: number;
  private startup = false;

  constructor(readonly opts: SimOptions) {
    this.now = opts.start;
    this.since = opts.start;
  }

  active(): SimRun[] {
    return this.runs.filter((r) => r.state === 'queued' || r.state === 'running');
  }

  /**
   * What the scheduler is told: every queued or running run and each job's
   * latest ended run (its contract), or, with `all`, every run there is.
   */
  known(all: boolean): KnownRun[] {
    const pick = all ? this.runs : [...this.active(), ...this.latestEnded()];
    return pick.map((r) => ({
      id: r.id,
      job: r.job,
      trigger: r.trigger,
      attempt: r.attempt,
      state: r.state,
      queuedAt: r.queuedAt,
      startedAt: r.startedAt,
      endedAt: r.endedAt,
      tasks: r.tasks,
    }));
  }

  private latestEnded(): SimRun[] {
    const latest = new Map<string, SimRun>();
    for (const r of this.runs) {
      if (r.endedAt === null) continue;
      const l = latest.get(r.job);
      if (l === undefined || r.endedAt > l.endedAt! || (r.endedAt === l.endedAt && r.id > l.id)) latest.set(r.job, r);
    }
    return [...latest.values()];
  }

  /** Asks the scheduler and carries out what it says, again at once while it queues runs. Returns when to ask next. */
  private decideAndApply(): number | null {
    for (let round = 0; ; round++) {
      assert.ok(round < 50, 'the scheduler keeps queuing runs at one instant');
      const input = {
        jobs: this.opts.jobs,
        since: this.since,
        now: this.now,
        startup: this.startup,
        maxTasks: this.opts.maxTasks,
        timeZone: this.opts.timeZone,
      };
      const decision = decide({ ...input, runs: this.known(false) });
      // The contract: more ended runs than each job's latest change nothing (checked at every 8th decision: the whole history is long).
      if (this.decisions.length % 8 === 0) assert.deepEqual(decide({ ...input, runs: this.known(true) }), decision, 'a decision depends on old runs');
      const record: DecisionRecord = { since: this.since, now: this.now, startup: this.startup, decision, activeBefore: this.active().map((r) => ({ ...r })) };
      this.decisions.push(record);
      this.since = this.now;
      this.startup = false;
      for (const s of decision.stop) this.end(this.byId(s.runId), 'stopped');
      for (const q of decision.queue) {
        const tasks = this.opts.jobs.find((j) => j.key === q.job)!.tasks;
        this.runs.push({
          id: this.runs.length + 1,
          ...q,
          state: 'queued',
          queuedAt: this.now,
          startedAt: null,
          endedAt: null,
          tasks,
          plannedEnd: null,
          plannedResult: 'succeeded',
        });
      }
      for (const id of decision.start) {
        const r = this.byId(id);
        assert.equal(r.state, 'queued', `run ${id} started twice`);
        const outcome = this.opts.runOutcome(r.job, this.opts.rand);
        Object.assign(r, { state: 'running', startedAt: this.now, plannedEnd: this.now + outcome.ms, plannedResult: outcome.result });
      }
      this.opts.check?.(this, record);
      // The runtime asks again when it has queued runs (they start once they have ids) and when a stopped run has ended.
      if (decision.queue.length === 0 && decision.stop.length === 0) return decision.nextAt;
      if (decision.queue.length > 0) assert.equal(decision.nextAt, this.now, 'a decision that queues runs asks again at once');
    }
  }

  byId(id: number): SimRun {
    const r = this.runs[id - 1];
    assert.ok(r !== undefined && r.id === id, `no run ${id}`);
    return r;
  }

  private end(r: SimRun, state: RunState): void {
    assert.ok(r.state === 'running' || (state === 'interrupted' && r.state === 'queued'), `run ${r.id} ends from ${r.state}`);
    Object.assign(r, { state, endedAt: this.now, plannedEnd: null });
  }

  /**
   * Runs until `until`: at each step the clock goes to the earliest of the
   * scheduler's next time and the next end of a run. `crashes` are times at
   * which the server dies; it starts again `downMs` later.
   */
  runUntil(until: number, crashes: readonly { at: number; downMs: number }[] = []): void {
    const pending = [...crashes].sort((a, b) => a.at - b.at);
    let next = this.decideAndApply();
    for (let steps = 0; ; steps++) {
      assert.ok(steps < 1_000_000, 'the simulation does not advance');
      const ends = this.runs.filter((r) => r.plannedEnd !== null).map((r) => r.plannedEnd!);
      const crash = pending[0];
      const at = Math.min(next ?? Infinity, ...ends, crash?.at ?? Infinity);
      if (at > until) break;
      assert.ok(at >= this.now, `time goes back: ${iso(at)} after ${iso(this.now)}`);
      this.now = at;
      if (crash !== undefined && crash.at === at) {
        pending.shift();
        // The server dies; at its start it marks what was unfinished interrupted (as the catalog's interruptUnfinished does).
        this.now = at + crash.downMs;
        for (const r of this.active()) this.end(r, 'interrupted');
        this.since = at;
        this.startup = true;
      } else {
        for (const r of this.runs) if (r.plannedEnd === at) this.end(r, r.plannedResult);
      }
      next = this.decideAndApply();
    }
    this.now = until;
  }
}

export function iso(t: number): string {
  return new Date(t).toISOString();
}
