/**
 * Stopping a run that does not run here: a queued run is recorded `stopped`
 * (only while still queued, in one statement, since the leader may be
 * starting it that moment), and remembered so that a start that read it just
 * before never begins it. A running one of another server is refused: it is
 * stopped where it runs.
 */
import type { Catalog, RunRecord } from '../../catalog/catalog.js';
import type { Clock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';

/** Stopped queued runs remembered against a late start; a start reads its run within a moment, so the latest few are plenty. */
const MAX_STOPS_KEPT = 1024;

export interface QueuedStopsDeps {
  readonly catalog: Catalog;
  readonly clock: Clock;
  /** Whether this server runs the scheduler now. */
  leading(): boolean;
  /** The scheduler's server, for messages. */
  leader(): Promise<string>;
  /** Stops a run of this server, if it runs here now, and resolves once it has ended; false if it does not run here. */
  stopRunning(runId: number): Promise<boolean>;
  /** Tells whoever waits for the run that it never starts. */
  neverStarts(runId: number): void;
}

export class QueuedStops {
  private readonly ids = new Set<number>();

  constructor(private readonly deps: QueuedStopsDeps) {}

  /** Whether a stop came for this run before it started: it must not start. */
  has(runId: number): boolean {
    return this.ids.has(runId);
  }

  /** Stops a run that was not running here when asked (it may start meanwhile: it is then stopped where it runs). */
  async stop(runId: number): Promise<void> {
    const { catalog, clock } = this.deps;
    // From here on it never starts: a start checks this set after its read of the run.
    const known = this.ids.has(runId);
    this.ids.add(runId);
    if (this.ids.size > MAX_STOPS_KEPT) this.ids.delete(this.ids.values().next().value!);
    const forget = (): void => {
      if (!known) this.ids.delete(runId);
    };
    let run: RunRecord;
    try {
      run = await catalog.getRun(runId);
    } catch (err) {
      forget();
      throw err;
    }
    if (run.state === 'running' && !this.deps.leading())
      throw new LifeboatError('LFB_ERR_STANDBY', `run ${runId} runs on the server that runs the scheduler (${await this.deps.leader()}): stop it there`);
    if (run.state !== 'queued') {
      forget();
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `run ${runId} has ended (${run.state}): there is nothing to stop`);
    }
    try {
      // Only while still queued: the leader may be starting it this moment (then it is stopped where it runs).
      const stopped = await catalog.updateRun(runId, { state: 'stopped', endedAt: clock.now().toISOString() }, 'queued');
      if (stopped.state !== 'stopped') {
        forget();
        if (await this.deps.stopRunning(runId)) return;
        if (stopped.state === 'running')
          throw new LifeboatError('LFB_ERR_STANDBY', `run ${runId} started on the server that runs the scheduler (${await this.deps.leader()}): stop it there`);
        throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `run ${runId} has ended (${stopped.state}): there is nothing to stop`);
      }
    } catch (err) {
      // Not recorded stopped: still queued, so it may start as before (the stop failed and says so).
      forget();
      throw err;
    }
    await catalog.appendLog(runId, [{ at: clock.now().toISOString(), level: 'info', message: 'stopped before it started' }]);
    this.deps.neverStarts(runId);
  }
}
