import { readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { systemClock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import type { RepositoryKeys } from '../../repository/index.js';
import type { Logger } from '../../core/log.js';
import type { BackupProgress } from '../../methods/backup-run.js';
import { Repository } from '../../repository/index.js';
import { errorFromWire, errorToWire, type BackupOutcome, type BackupRequest, type BackupRunner, type WireError } from './backup-runner.js';

/** What the data mover's thread is started with. */
export interface MoverThreadData {
  /** How much lower than the server's its CPU priority is (nice levels; 0: the same). */
  readonly nice: number;
  /** Block workers of its pool (default: one per core, at most 8). */
  readonly workers?: number | undefined;
  /** The server's spawner (core/spawner.ts): the thread starts its helper processes through it. */
  readonly spawnerSocket?: string | undefined;
}

/** Server → thread. */
export type MoverRequest =
  | {
      readonly type: 'backup';
      readonly id: number;
      readonly repo: string;
      readonly job: string;
      readonly activeFull?: boolean | undefined;
      readonly acceptSourceChange?: boolean | undefined;
      readonly waitMs?: number | undefined;
      /**
       * An encrypted repository's keys, unlocked in the server's thread (serve --password-file): the thread's own
       * keyring (module state, one per thread) is empty, and it has no password source of its own.
       */
      readonly keys?: RepositoryKeys | undefined;
    }
  | { readonly type: 'stop'; readonly id: number; readonly error: WireError }
  | { readonly type: 'close' };

/** Thread → server. */
export type MoverMessage =
  | { readonly type: 'ready'; readonly nice: number; readonly problem?: string }
  | { readonly type: 'progress'; readonly id: number; readonly progress: BackupProgress }
  | { readonly type: 'done'; readonly id: number; readonly outcome: BackupOutcome }
  | { readonly type: 'failed'; readonly id: number; readonly error: WireError };

export interface DataMoverOptions {
  readonly logger: Logger;
  /** Nice levels added to the thread's (and its block workers') CPU priority; 0 leaves it as the server's. */
  readonly nice: number;
  readonly workers?: number | undefined;
  /** The server's spawner, for the thread's helper processes (undefined: it spawns them itself). */
  readonly spawnerSocket?: string | undefined;
  /** The thread's entry (tests substitute one that wraps the real one). */
  readonly threadUrl?: URL | undefined;
  /** How long close() lets the thread end by itself before ending it. */
  readonly closeTimeoutMs?: number | undefined;
}

interface PendingRun {
  readonly repo: string;
  readonly job: string;
  readonly request: BackupRequest;
  /** Wall time (the system's, as the job lock records it) the run was handed to the thread. */
  readonly startedAt: number;
  readonly resolve: (o: BackupOutcome) => void;
  readonly reject: (e: unknown) => void;
}

/** One thread per server; its lifetime, as far as the runs on it are concerned. */
interface Thread {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly runs: Map<number, PendingRun>;
  ended: boolean;
}

/**
 * The data mover: the server's backups run in one worker thread of their
 * own (data-mover-thread.ts), started with the server and kept warm, at a
 * lower CPU priority, so the HTTP API, the scheduler and instant
 * recovery's reads never wait behind hashing, compression or a scan of a
 * job's files. Progress, stops and errors cross as messages. A thread that
 * dies fails the runs it had (LFB_ERR_INTERNAL) and is started again for
 * the next run; it never takes the server with it.
 */
export class DataMover implements BackupRunner {
  private thread: Thread | undefined;
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: DataMoverOptions) {}

  /** Starts the thread and waits until it is ready (modules loaded, workers started). */
  async start(): Promise<void> {
    await this.current().ready;
  }

  /** The thread's id (as `threadId` in node:worker_threads), when one runs. */
  get threadId(): number | undefined {
    return this.thread?.ended === false ? this.thread.worker.threadId : undefined;
  }

  async backup(repo: string, job: string, request: BackupRequest): Promise<BackupOutcome> {
    if (this.closed) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping');
    // Opening the repository here unlocks an encrypted one with the server's password (once; then from memory).
    const { keys } = await Repository.open(repo);
    const thread = this.current();
    const id = this.nextId++;
    return new Promise<BackupOutcome>((resolve, reject) => {
      thread.runs.set(id, { repo, job, request, startedAt: systemClock.now().getTime(), resolve, reject });
      thread.worker.ref();
      thread.worker.postMessage({
        type: 'backup',
        id,
        repo,
        job,
        activeFull: request.activeFull,
        acceptSourceChange: request.acceptSourceChange,
        waitMs: request.waitMs,
        keys,
      } satisfies MoverRequest);
      // After the backup: the thread takes messages in order, and a stop for a run it does not have yet is
      // nothing to it, so a stop that came while the run was starting would have been lost.
      const stop = (): void => {
        if (!thread.ended) thread.worker.postMessage({ type: 'stop', id, error: errorToWire(request.signal.reason) } satisfies MoverRequest);
      };
      if (request.signal.aborted) stop();
      else request.signal.addEventListener('abort', stop, { once: true });
    });
  }

  /** Ends the thread (the server stopped its runs first): it closes its workers and exits, or is ended after closeTimeoutMs. */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    if (!thread || thread.ended) return;
    const exited = new Promise<void>((resolve) => thread.worker.once('exit', () => resolve()));
    thread.worker.postMessage({ type: 'close' } satisfies MoverRequest);
    const timer = setTimeout(() => void thread.worker.terminate(), this.opts.closeTimeoutMs ?? 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** The running thread, or a new one when there is none (never started, or the last one died). */
  private current(): Thread {
    if (this.thread && !this.thread.ended) return this.thread;
    const worker = new Worker(this.opts.threadUrl ?? new URL('./data-mover-thread.js', import.meta.url), {
      workerData: { nice: this.opts.nice, workers: this.opts.workers, spawnerSocket: this.opts.spawnerSocket } satisfies MoverThreadData,
    });
    let ready!: () => void;
    const thread: Thread = { worker, ready: new Promise<void>((r) => (ready = r)), runs: new Map(), ended: false };
    this.thread = thread;
    worker.unref();
    worker.on('message', (m: MoverMessage) => {
      if (m.type === 'ready') {
        ready();
        if (m.problem !== undefined)
          this.opts.logger.warn('service: the data mover could not lower its CPU priority', { nice: this.opts.nice, problem: m.problem });
        return;
      }
      const run = thread.runs.get(m.id);
      if (!run) return;
      if (m.type === 'progress') {
        run.request.onProgress(m.progress);
        return;
      }
      this.settled(thread, m.id);
      if (m.type === 'done') run.resolve(m.outcome);
      else run.reject(errorFromWire(m.error));
    });
    let why: string | undefined;
    worker.on('error', (err) => {
      why = err instanceof Error ? err.message : String(err);
      this.opts.logger.error('service: the data mover thread failed', { problem: why });
    });
    worker.on('exit', (exitCode) => {
      thread.ended = true;
      ready();
      if (thread.runs.size === 0) return;
      const cause = why ?? `it exited with code ${exitCode}`;
      this.opts.logger.error('service: the data mover thread ended with runs going', { runs: thread.runs.size, problem: cause });
      for (const [id, run] of [...thread.runs]) {
        this.settled(thread, id);
        run.reject(
          new LifeboatError('LFB_ERR_INTERNAL', `the data mover thread running the backup ended unexpectedly (${cause}); the next run starts a new one`, {
            details: { problem: cause },
          }),
        );
        void releaseLeftLock(run.repo, run.job, run.startedAt);
      }
    });
    return thread;
  }

  private settled(thread: Thread, id: number): void {
    thread.runs.delete(id);
    // Idle, the thread does not keep a process alive by itself.
    if (thread.runs.size === 0 && !thread.ended) thread.worker.unref();
  }
}

/**
 * The job lock a dead thread's backup held: it names this (living) process,
 * so no one would ever take it over. Removed when it is this process's and
 * was taken after the run began (a lock from before is someone else's).
 */
async function releaseLeftLock(repoDir: string, job: string, runStartedAt: number): Promise<void> {
  try {
    const path = join((await Repository.open(repoDir)).jobDir(job), 'lock');
    const holder = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown; host?: unknown; since?: unknown };
    const since = typeof holder.since === 'string' ? Date.parse(holder.since) : NaN;
    if (holder.pid === process.pid && holder.host === hostname() && since >= runStartedAt) await unlink(path);
  } catch {
    // No lock left (the usual case), or one that is not ours.
  }
}
