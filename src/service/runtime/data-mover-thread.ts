/**
 * The data mover's thread (started by data-mover.ts): every backup of the
 * server runs here, off the event loop that answers the HTTP API, writes
 * the catalog and runs the scheduler. At start it lowers its own CPU
 * priority (Linux nice is per thread; the block workers it starts inherit
 * it), loads the backup code and starts its own block worker pool, so a
 * run pays none of that.
 */
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { LifeboatService } from '../../app/service.js';
import { BlockWorkerPool } from '../../compress/block-pool.js';
import { clockFromEnv } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import { useSpawner } from '../../core/spawner.js';
import { adoptRepositoryKeys } from '../../repository/index.js';
import type { BackupProgress } from '../../methods/backup-run.js';
import { InProcessBackupRunner, errorFromWire, errorToWire } from './backup-runner.js';
import type { MoverRequest, MoverMessage, MoverThreadData } from './data-mover.js';

/** At most this many progress messages a second per run (the API's live progress needs no more). */
const PROGRESS_EVERY_MS = 100;

const port = parentPort;
if (!port) throw new Error('data-mover-thread.js runs as a worker thread (see data-mover.ts)');
const data = workerData as MoverThreadData;

const post = (m: MoverMessage): void => port.postMessage(m);

let niceProblem: string | undefined;
if (data.nice > 0) {
  try {
    // On Linux, 0 is the calling thread alone: the server's main thread keeps its priority.
    setPriority(0, Math.min(19, getPriority(0) + data.nice));
  } catch (err) {
    niceProblem = err instanceof Error ? err.message : String(err);
  }
}
useSpawner(data.spawnerSocket);
const pool = new BlockWorkerPool(data.workers);
const runner = new InProcessBackupRunner(new LifeboatService(clockFromEnv()), pool);
const runs = new Map<number, AbortController>();

/** Sends a run's progress at most every PROGRESS_EVERY_MS; a disk's last progress and the latest before the end always go. */
class ProgressPacer {
  private last = 0;
  private pending: BackupProgress | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly id: number) {}

  offer(p: BackupProgress): void {
    const now = performance.now();
    const diskEnd = p.bytesDone >= p.bytesTotal;
    if (diskEnd || now - this.last >= PROGRESS_EVERY_MS) {
      this.send(p, now);
      return;
    }
    this.pending = p;
    this.timer ??= setTimeout(() => this.flush(), PROGRESS_EVERY_MS - (now - this.last));
  }

  flush(): void {
    if (this.pending) this.send(this.pending, performance.now());
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private send(p: BackupProgress, now: number): void {
    this.pending = undefined;
    this.last = now;
    post({ type: 'progress', id: this.id, progress: p });
  }
}

async function backup(req: Extract<MoverRequest, { type: 'backup' }>): Promise<void> {
  const controller = new AbortController();
  runs.set(req.id, controller);
  const pacer = new ProgressPacer(req.id);
  if (req.keys !== undefined) adoptRepositoryKeys(req.repo, req.keys);
  try {
    const outcome = await runner.backup(req.repo, req.job, {
      signal: controller.signal,
      onProgress: (p) => pacer.offer(p),
      activeFull: req.activeFull,
      acceptSourceChange: req.acceptSourceChange,
      waitMs: req.waitMs,
    });
    pacer.flush();
    post({ type: 'done', id: req.id, outcome });
  } catch (err) {
    pacer.flush();
    post({ type: 'failed', id: req.id, error: errorToWire(err) });
  } finally {
    runs.delete(req.id);
  }
}

port.on('message', (m: MoverRequest) => {
  switch (m.type) {
    case 'backup':
      void backup(m);
      break;
    case 'stop':
      runs.get(m.id)?.abort(errorFromWire(m.error));
      break;
    case 'close':
      // Runs were stopped by the server first; any left stop now, then the workers end and so does the thread.
      for (const c of runs.values()) c.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'the server is stopping'));
      void pool.close().finally(() => port.close());
      break;
  }
});

post({ type: 'ready', nice: getPriority(0), ...(niceProblem === undefined ? {} : { problem: niceProblem }) });
