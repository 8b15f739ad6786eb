import type { LifeboatService } from '../../app/service.js';
import type { Catalog, LogLine, RunRecord, RunState, RunUpdate } from '../../catalog/catalog.js';
import type { Clock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
import type { Logger } from '../../core/log.js';
import type { CopyProgress, CopyResult } from '../../methods/copy-run.js';
import type { RunProgress } from '../http/deps.js';
import type { StopReason } from './run-execution.js';

const STATE_FOR: Record<StopReason, RunState> = { stopped: 'stopped', 'window-closed': 'stopped', shutdown: 'interrupted' };
const STOP_WORDS: Record<StopReason, string> = {
  stopped: 'a person stopped it',
  'window-closed': 'its window closed',
  shutdown: 'the server is stopping',
};

/** How long a copy waits for a backup of its job (the source's lock) or another copy (the target's) before it fails. */
export const COPY_LOCK_WAIT_MS = 10 * 60_000;
/** A progress line in the run's log at most this often. */
const LOG_PROGRESS_EVERY_MS = 10_000;

export interface CopyExecutionDeps {
  readonly catalog: Catalog;
  readonly service: LifeboatService;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * One run of a copy job inside the server (kind 'copy'): copies the job's
 * new points to the target repository and applies the target's retention
 * (runCopy). The catalog records it as it records a backup: one task, the
 * bytes copied (bytesStored; bytesRead the same: stored blocks are read as
 * they are written), the newest point it made (pointId, the target's), a log
 * line for each point made and each retention action, and the error's code
 * when it fails. Stopped, it ends at the copy's next safe point (a block
 * boundary: the half-written point is removed by the next run).
 */
export class CopyExecution {
  private readonly controller = new AbortController();
  private stopReason: StopReason | undefined;
  readonly lastProgress = undefined;
  /** What the copy returned, when it succeeded (for a CLI that handed its `copy run` over). */
  result: CopyResult | undefined;
  private readonly listeners = new Set<(p: RunProgress) => void>();
  private lastLogged = 0;
  readonly done: Promise<RunRecord>;

  constructor(
    readonly run: RunRecord,
    private readonly deps: CopyExecutionDeps,
  ) {
    this.done = this.execute();
  }

  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', STOP_WORDS[reason], { details: { reason } }));
  }

  /** Progress in blocks of the point being copied (bytesDone/bytesTotal count blocks here). */
  watch(listener: (p: RunProgress) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private now(): string {
    return this.deps.clock.now().toISOString();
  }

  private async log(level: LogLine['level'], message: string): Promise<void> {
    await this.deps.catalog.appendLog(this.run.id, [{ at: this.now(), level, message }]).catch((err: unknown) => {
      this.deps.logger.error('service: could not append to a run log', { run: this.run.id, problem: err instanceof Error ? err.message : String(err) });
    });
  }

  private progress(p: CopyProgress): void {
    for (const l of this.listeners) l({ disk: p.disk, diskCount: 1, bytesDone: p.blocksDone, bytesTotal: p.blocksTotal });
    const t = this.deps.clock.now().getTime();
    if (t - this.lastLogged < LOG_PROGRESS_EVERY_MS) return;
    this.lastLogged = t;
    void this.log('info', `point ${p.index}/${p.count} (${p.sourcePointId}) disk ${p.disk + 1}: block ${p.blocksDone}/${p.blocksTotal}`);
  }

  private async execute(): Promise<RunRecord> {
    const { catalog } = this.deps;
    const { repo, job: name } = this.run;
    const startedAt = this.now();
    // Only a run still queued starts: a stop through another server sharing the catalog may have come first.
    const marked = await catalog.updateRun(this.run.id, { state: 'running', startedAt }, 'queued');
    if (marked.state !== 'running') return marked;
    await this.log('info', `copy run ${this.run.id} of ${name} started (${this.run.trigger}${this.run.attempt > 1 ? `, attempt ${this.run.attempt}` : ''})`);
    const task = { runId: this.run.id, disk: 0, diskName: name, startedAt, bytesRead: 0, bytesStored: 0 };
    await catalog.putTask({ ...task, state: 'running', endedAt: null });
    let change: RunUpdate & { state: RunState };
    try {
      const r = await this.deps.service.runCopy(repo, name, {
        waitMs: COPY_LOCK_WAIT_MS,
        signal: this.controller.signal,
        onProgress: (p) => this.progress(p),
      });
      this.result = r;
      const bytes = r.copied.reduce((n, p) => n + p.bytesCopied, 0);
      for (const n of r.cleanedUp) await this.log('info', `removed ${n}, left by an interrupted copy`);
      for (const p of r.copied)
        await this.log(
          'info',
          `${p.kind} ${p.pointId} ← point ${p.sourcePointId}: ${p.blocksCopied} blocks copied (${formatBytes(p.bytesCopied)}), ${p.blocksUnchanged} unchanged, ${p.blocksZero} zero`,
        );
      for (const a of r.retention)
        await this.log('info', `retention on the target: ${a.skipped !== undefined ? `postponed (${a.skipped}) — ` : `${a.action.type} — `}${a.action.reason}`);
      await this.log(
        'info',
        r.copied.length === 0 ? `succeeded: up to date (${r.target})` : `succeeded: ${r.copied.length} point(s) copied to ${r.target}, ${formatBytes(bytes)}`,
      );
      const newest = r.copied[r.copied.length - 1];
      change = { state: 'succeeded', endedAt: this.now(), bytesRead: bytes, bytesStored: bytes, ...(newest ? { pointId: newest.pointId } : {}) };
    } catch (error) {
      const err = error instanceof LifeboatError ? error : new LifeboatError('LFB_ERR_INTERNAL', error instanceof Error ? error.message : String(error));
      const stopped = this.stopReason !== undefined && (err.code === 'LFB_ERR_INTERRUPTED' || this.controller.signal.aborted);
      const state: RunState = stopped ? STATE_FOR[this.stopReason!] : 'failed';
      const message = stopped ? `${STOP_WORDS[this.stopReason!]}; the point being copied is removed by the next run` : err.message;
      change = { state, endedAt: this.now(), errorCode: stopped ? 'LFB_ERR_INTERRUPTED' : err.code, errorMessage: message };
      await this.log(state === 'failed' ? 'error' : 'warn', `${state}: ${message} [${change.errorCode}]`);
    }
    await catalog.putTask({
      ...task,
      state: change.state,
      endedAt: change.endedAt ?? this.now(),
      bytesRead: change.bytesRead ?? 0,
      bytesStored: change.bytesStored ?? 0,
    });
    return catalog.updateRun(this.run.id, change);
  }
}
