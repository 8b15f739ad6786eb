/**
 * The server's side of its data movers: a BackupRunner that runs a job's
 * backup on the server (the `local` runner) unless the job names a mover or
 * a group of movers, and then queues it as a task for the live mover of that
 * name or group with the fewest tasks, below its cap. Movers are known by
 * what they say (poll, progress, result: protocol.ts); one that says nothing
 * for `moverTimeoutMs` is gone, and its tasks go back to the queue for
 * another (a killed mover's backup is never committed: the next backup of the
 * job cleans up after it). A task no live mover can take within
 * `noMoverMs` fails with LFB_ERR_NO_MOVER; its run is retried by its policy.
 * Nothing here is kept across a restart of the server: movers poll again, and
 * runs left running are interrupted and retried as every run is.
 */

import { randomInt } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { LifeboatError, errorFromCode } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { BackupResult } from '../../methods/backup-run.js';
import type { BackupOutcome, BackupRequest, BackupRunner, PointChanges } from '../runtime/backup-runner.js';
import type { MoverTask, MoverView, PollBody, PollReply, ProgressBody, ProgressReply, ResultBody, StopOrder } from './protocol.js';

export const DEFAULT_MOVER_TIMEOUT_MS = 15_000;
export const DEFAULT_NO_MOVER_MS = 120_000;
/** How long a poll waits for a task before it is answered empty (the mover polls again at once). */
export const POLL_WAIT_MS = 10_000;
/** A task is given to another mover this many times at most; then its run fails (and is retried by its policy). */
const MAX_HANDOVERS = 3;
/** Movers known at once at most (a peer naming new ones without end is refused); silent ones without tasks are forgotten. */
const MAX_MOVERS = 1024;
/** A mover without tasks is forgotten after this many of its timeouts of silence. */
const FORGET_AFTER_TIMEOUTS = 20;

export interface MoverHubOptions {
  /** Backups of jobs without a mover. */
  readonly local: BackupRunner;
  /** The mover or group a job names (job.json's `mover`), undefined for none; a job that cannot be read rejects. */
  readonly moverOf: (repo: string, job: string) => Promise<string | undefined>;
  /** False on a server standing by (another runs the scheduler, and the runs): movers poll the leader. Default: always true. */
  readonly leading?: (() => boolean) | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly moverTimeoutMs?: number | undefined;
  readonly noMoverMs?: number | undefined;
  readonly pollWaitMs?: number | undefined;
}

interface Task {
  readonly id: number;
  readonly repo: string;
  readonly job: string;
  /** The mover's name or group the job names. */
  readonly target: string;
  readonly request: BackupRequest;
  readonly queuedAt: number;
  mover: string | undefined;
  session: string | undefined;
  handovers: number;
  /** Said to the mover at its next poll or progress (the run was stopped), and since when. */
  stopping: StopOrder | undefined;
  stoppingSince: number;
  readonly resolve: (o: BackupOutcome) => void;
  readonly reject: (e: unknown) => void;
}

interface Mover {
  readonly name: string;
  session: string;
  group: string | undefined;
  maxTasks: number;
  lastSeen: number;
  readonly tasks: Set<number>;
  /** The poll waiting for a task, if one is. */
  wake: (() => void) | undefined;
}

export class MoverHub implements BackupRunner {
  private readonly tasks = new Map<number, Task>();
  private readonly movers = new Map<string, Mover>();
  /**
   * Task ids start at random: a mover still running a task of an earlier server (restarted, or the leader before
   * a failover) never takes a new task for it.
   */
  private nextId = randomInt(1, 2 ** 47);
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: MoverHubOptions) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, this.timeoutMs / 3));
    this.sweeper.unref();
  }

  private get now(): number {
    return this.opts.clock.now().getTime();
  }

  async backup(repo: string, job: string, request: BackupRequest): Promise<BackupOutcome> {
    const target = await this.opts.moverOf(repo, job);
    if (target === undefined) return this.opts.local.backup(repo, job, request);
    if (this.closed) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping');
    return new Promise<BackupOutcome>((resolve, reject) => {
      const task: Task = {
        id: this.nextId++,
        repo,
        job,
        target,
        request,
        queuedAt: this.now,
        mover: undefined,
        session: undefined,
        handovers: 0,
        stopping: undefined,
        stoppingSince: 0,
        resolve,
        reject,
      };
      this.tasks.set(task.id, task);
      const onAbort = (): void => this.abort(task);
      if (request.signal.aborted) onAbort();
      else request.signal.addEventListener('abort', onAbort, { once: true });
      this.offer();
    });
  }

  /** A mover's poll: it is alive; its lost tasks go back to the queue; it gets what it may take (waiting up to pollWaitMs for it). */
  async poll(name: string, body: PollBody, gone?: AbortSignal): Promise<PollReply> {
    if (this.opts.leading?.() === false)
      throw new LifeboatError('LFB_ERR_STANDBY', 'this server stands by: another server sharing its catalog runs the scheduler and the backups; poll it');
    const m = this.seen(name, body);
    // Tasks it was given that it does not run (it never got the answer, or a task ended without its result): lost.
    const running = new Set(body.running);
    for (const id of [...m.tasks]) if (!running.has(id)) this.lose(id, `mover ${name} does not run it`);
    let given = this.take(m);
    if (given.length === 0 && this.stopsOf(m).length === 0 && !this.closed) {
      // A third of the time a mover may be silent: a waiting mover is never taken for a gone one.
      const waitMs = Math.min(this.opts.pollWaitMs ?? POLL_WAIT_MS, this.timeoutMs / 3);
      await new Promise<void>((wake) => {
        const timer = setTimeout(() => wake(), waitMs);
        const done = (): void => {
          clearTimeout(timer);
          gone?.removeEventListener('abort', done);
          wake();
        };
        m.wake = done;
        gone?.addEventListener('abort', done, { once: true });
      });
      m.wake = undefined;
      // A new session may have taken the name meanwhile, or the mover hung up (killed): this poll's answer is nobody's.
      if (m.session !== body.session || gone?.aborted === true) return { tasks: [], stop: [], timeoutMs: this.timeoutMs };
      m.lastSeen = this.now;
      given = this.take(m);
    }
    // What this mover left (its cap, or a mover with fewer tasks) goes to a waiting one now, not at its next poll.
    this.offer();
    return { tasks: given.map((t) => this.wire(t)), stop: this.stopsOf(m), timeoutMs: this.timeoutMs };
  }

  progress(name: string, id: number, body: ProgressBody): ProgressReply {
    const t = this.ownTask(name, id, body.session);
    this.movers.get(name)!.lastSeen = this.now;
    const progress = { disk: body.disk, diskCount: body.diskCount, bytesDone: body.bytesDone, bytesTotal: body.bytesTotal };
    if (t.stopping === undefined) t.request.onProgress(progress);
    return { stop: t.stopping ?? null };
  }

  result(name: string, id: number, body: ResultBody): void {
    const t = this.ownTask(name, id, body.session);
    const m = this.movers.get(name)!;
    m.lastSeen = this.now;
    // A mover that stops (SIGTERM) interrupts its backups without being asked: they go to another mover.
    if (!body.outcome && body.error?.code === 'LFB_ERR_INTERRUPTED' && t.stopping === undefined) return this.lose(id, `mover ${name} stopped`);
    m.tasks.delete(id);
    this.tasks.delete(id);
    if (body.outcome) t.resolve({ result: body.outcome.result as unknown as BackupResult, changes: body.outcome.changes as unknown as PointChanges });
    else {
      const e = body.error ?? { code: 'LFB_ERR_INTERNAL', message: 'the mover sent neither an outcome nor an error' };
      t.reject(errorFromCode(e.code, `${e.message} (on mover ${name})`, 'LFB_ERR_INTERNAL'));
    }
    this.offer();
  }

  list(): MoverView[] {
    const now = this.now;
    return [...this.movers.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((m) => ({
        name: m.name,
        group: m.group ?? null,
        maxTasks: m.maxTasks,
        running: [...m.tasks].map((id) => this.tasks.get(id)?.request.runId ?? 0),
        lastSeen: new Date(m.lastSeen).toISOString(),
        alive: now - m.lastSeen <= this.timeoutMs,
      }));
  }

  /** Fails what is queued and answers waiting polls; tasks on movers end as their runs are stopped (the server stops them first). */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const t of this.tasks.values()) if (t.mover === undefined) this.fail(t, new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping'));
    for (const m of this.movers.values()) m.wake?.();
  }

  private get timeoutMs(): number {
    return this.opts.moverTimeoutMs ?? DEFAULT_MOVER_TIMEOUT_MS;
  }

  private seen(name: string, body: PollBody): Mover {
    let m = this.movers.get(name);
    if (m && m.session !== body.session && m.tasks.size > 0 && this.alive(m))
      // Not while the mover of that name is alive with tasks: another caller would take them over (a mover started
      // again is taken once its old process has been silent for the timeout).
      throw new LifeboatError(
        'LFB_ERR_MOVER_NAME_IN_USE',
        `data mover ${name} is running backups in another process; a new one of that name is taken once that one has been silent for ${Math.round(this.timeoutMs / 1000)} s`,
        { details: { mover: name } },
      );
    if (!m && this.movers.size >= MAX_MOVERS)
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `the server knows ${MAX_MOVERS} data movers already: no more names are taken`);
    if (m && m.session !== body.session) {
      // The same name from another process: what the old one had is lost.
      for (const id of [...m.tasks]) this.lose(id, `mover ${name} started again`);
      m.wake?.();
      m.session = body.session;
      this.opts.logger.info('service: a data mover came back', { mover: name, group: body.group });
    }
    if (!m) {
      m = { name, session: body.session, group: undefined, maxTasks: 1, lastSeen: 0, tasks: new Set(), wake: undefined };
      this.movers.set(name, m);
      this.opts.logger.info('service: a data mover registered', { mover: name, group: body.group, maxTasks: body.maxTasks });
    }
    m.group = body.group;
    m.maxTasks = body.maxTasks;
    m.lastSeen = this.now;
    return m;
  }

  private ownTask(name: string, id: number, session: string): Task {
    const t = this.tasks.get(id);
    const m = this.movers.get(name);
    if (!t || !m || t.mover !== name || t.session !== session || m.session !== session)
      throw new LifeboatError('LFB_ERR_MOVER_TASK_NOT_FOUND', `mover ${name} has no task ${id} (it was given to another mover, or it ended)`, {
        details: { mover: name, task: id },
      });
    return t;
  }

  private alive(m: Mover): boolean {
    return this.now - m.lastSeen <= this.timeoutMs;
  }

  /** Queued tasks this mover may take now, marked as its own. */
  private take(m: Mover): Task[] {
    const out: Task[] = [];
    for (const t of this.tasks.values()) {
      if (m.tasks.size >= m.maxTasks) break;
      if (t.mover !== undefined || t.stopping !== undefined || !this.eligible(m, t)) continue;
      // Of the live movers that may take it, the one with the fewest tasks (ties: this one).
      const better = [...this.movers.values()].find((o) => o !== m && o.wake !== undefined && this.eligible(o, t) && o.tasks.size < m.tasks.size);
      if (better) continue;
      t.mover = m.name;
      t.session = m.session;
      m.tasks.add(t.id);
      out.push(t);
      t.request.note?.('info', `backup given to data mover ${m.name}${t.handovers > 0 ? ` (hand-over ${t.handovers})` : ''}`);
      this.opts.logger.info('service: task given to a data mover', { mover: m.name, run: t.request.runId, repo: t.repo, job: t.job });
    }
    return out;
  }

  private eligible(m: Mover, t: Task): boolean {
    return (m.name === t.target || m.group === t.target) && this.alive(m) && m.tasks.size < m.maxTasks;
  }

  /** Wakes a waiting poll that can take a queued task. */
  private offer(): void {
    for (const t of this.tasks.values()) {
      if (t.mover !== undefined) continue;
      const waiting = [...this.movers.values()].filter((m) => m.wake !== undefined && this.eligible(m, t)).sort((a, b) => a.tasks.size - b.tasks.size);
      waiting[0]?.wake?.();
    }
  }

  private stopsOf(m: Mover): StopOrder[] {
    const out: StopOrder[] = [];
    for (const id of m.tasks) {
      const s = this.tasks.get(id)?.stopping;
      if (s) out.push(s);
    }
    return out;
  }

  private wire(t: Task): MoverTask {
    return {
      id: t.id,
      repo: t.repo,
      job: t.job,
      run: t.request.runId ?? 0,
      ...(t.request.activeFull ? { activeFull: true } : {}),
      ...(t.request.acceptSourceChange ? { acceptSourceChange: true } : {}),
      ...(t.request.waitMs ? { waitMs: t.request.waitMs } : {}),
    };
  }

  /** The run was stopped: a queued task ends now; a mover's is told to stop, and ends with the error it reports. */
  private abort(t: Task): void {
    const reason = t.request.signal.reason as unknown;
    const err = reason instanceof LifeboatError ? reason : new LifeboatError('LFB_ERR_INTERRUPTED', String(reason));
    if (t.mover === undefined) return this.fail(t, err);
    t.stopping = { id: t.id, code: err.code, message: err.message };
    t.stoppingSince = this.now;
    this.movers.get(t.mover)?.wake?.();
  }

  private fail(t: Task, err: LifeboatError): void {
    this.tasks.delete(t.id);
    if (t.mover !== undefined) this.movers.get(t.mover)?.tasks.delete(t.id);
    t.reject(err);
  }

  /** A task whose mover is gone goes back to the queue for another (a stopped one just ends). */
  private lose(id: number, why: string): void {
    const t = this.tasks.get(id);
    if (!t || t.mover === undefined) return;
    const from = t.mover;
    this.movers.get(from)?.tasks.delete(id);
    this.opts.logger.warn('service: a data mover lost its task', { mover: from, run: t.request.runId, job: t.job, why });
    if (t.stopping !== undefined) return this.fail(t, errorFromCode(t.stopping.code, t.stopping.message, 'LFB_ERR_INTERRUPTED'));
    if (t.handovers >= MAX_HANDOVERS)
      return this.fail(t, new LifeboatError('LFB_ERR_MOVER_LOST', `the backup was lost by ${MAX_HANDOVERS + 1} data movers in a row (last: ${from}, ${why})`));
    t.handovers++;
    t.mover = undefined;
    t.session = undefined;
    t.request.note?.('warn', `data mover ${from} lost the backup (${why}): it goes to another mover of ${t.target}`);
    this.offer();
  }

  private sweep(): void {
    const now = this.now;
    for (const m of [...this.movers.values()]) {
      if (m.tasks.size > 0 && !this.alive(m)) for (const id of [...m.tasks]) this.lose(id, `no word from it for ${Math.round((now - m.lastSeen) / 1000)} s`);
      if (m.tasks.size === 0 && m.wake === undefined && now - m.lastSeen > FORGET_AFTER_TIMEOUTS * this.timeoutMs) this.movers.delete(m.name);
    }
    // A mover told to stop that neither ends the task nor loses it (it keeps listing it): the run ends without it.
    for (const t of [...this.tasks.values()])
      if (t.stopping !== undefined && now - t.stoppingSince > 2 * this.timeoutMs)
        this.fail(t, errorFromCode(t.stopping.code, t.stopping.message, 'LFB_ERR_INTERRUPTED'));
    for (const t of this.tasks.values()) {
      if (t.mover !== undefined || now - t.queuedAt < (this.opts.noMoverMs ?? DEFAULT_NO_MOVER_MS)) continue;
      // Movers of its group that are alive (busy or not) take it in turn: it waits for them.
      if ([...this.movers.values()].some((m) => (m.name === t.target || m.group === t.target) && this.alive(m))) continue;
      this.fail(
        t,
        new LifeboatError(
          'LFB_ERR_NO_MOVER',
          `no data mover named or in group ${t.target} has polled the server for ${Math.round((now - t.queuedAt) / 1000)} s`,
          {
            details: { mover: t.target },
          },
        ),
      );
    }
  }
}
