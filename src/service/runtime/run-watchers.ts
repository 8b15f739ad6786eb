import type { RunProgress } from '../http/deps.js';

/** What a watcher needs of a run's execution: its progress, and `done`, which settles once the catalog has its end. */
export interface WatchedExecution {
  watch(listener: (p: RunProgress) => void): () => void;
  readonly done: Promise<unknown>;
}

/** Who watches a run that has not started yet: attached to its execution when it starts. */
interface Watcher {
  readonly listener: (p: RunProgress) => void;
  readonly ended: (() => void) | undefined;
  detach?: () => void;
}

/** Progress of a running execution, and its recorded end. */
function watchExecution(exec: WatchedExecution, listener: (p: RunProgress) => void, ended: (() => void) | undefined): () => void {
  const detach = exec.watch(listener);
  let watching = true;
  const tell = (): void => {
    if (watching) ended?.();
  };
  if (ended) void exec.done.then(tell, tell);
  return () => {
    watching = false;
    detach();
  };
}

/**
 * The watchers of runs, also of runs not started yet: the console opens a
 * run's event stream right after asking for the run, which may still be
 * queued (behind the task cap, or a busy machine). They move to the run when
 * it starts, or hear its end when it never will.
 */
export class RunWatchers {
  private readonly waiting = new Map<number, Set<Watcher>>();
  private following: NodeJS.Timeout | undefined;

  /** Watches run `runId`: its execution if it runs, else from the queue. Returns the unwatch. */
  watch(runId: number, exec: WatchedExecution | undefined, listener: (p: RunProgress) => void, ended?: () => void): () => void {
    if (exec) return watchExecution(exec, listener, ended);
    const watcher: Watcher = { listener, ended };
    const set = this.waiting.get(runId) ?? new Set();
    set.add(watcher);
    this.waiting.set(runId, set);
    return () => {
      watcher.detach?.();
      set.delete(watcher);
      if (set.size === 0 && this.waiting.get(runId) === set) this.waiting.delete(runId);
    };
  }

  /** The run started: its watchers follow its execution (called before the execution's first progress). */
  started(runId: number, exec: WatchedExecution): void {
    for (const w of this.waiting.get(runId) ?? []) w.detach = watchExecution(exec, w.listener, w.ended);
    this.waiting.delete(runId);
  }

  /** The runs watched before they started. */
  waitingIds(): number[] {
    return [...this.waiting.keys()];
  }

  /** Tells the watchers of runs that `ended` says have ended (elsewhere: another server ran them). */
  async endEnded(ended: (runId: number) => Promise<boolean>): Promise<void> {
    for (const id of this.waitingIds()) if (await ended(id).catch(() => false)) this.neverStarts(id);
  }

  /**
   * On a server standing by, watched runs run elsewhere: every `everyMs` their watchers hear of the ends `ended`
   * finds, until none waits or `stillFollowing` says no more.
   */
  followEnds(ended: (runId: number) => Promise<boolean>, stillFollowing: () => boolean, everyMs: number): void {
    if (this.following || this.waiting.size === 0) return;
    this.following = setInterval(() => {
      if (this.waiting.size === 0 || !stillFollowing()) return this.stopFollowing();
      void this.endEnded(ended);
    }, everyMs);
    this.following.unref();
  }

  stopFollowing(): void {
    if (this.following) clearInterval(this.following);
    this.following = undefined;
  }

  /** The run will never start (stopped in the queue, or ended elsewhere): its watchers hear its end. */
  neverStarts(runId: number): void {
    const set = this.waiting.get(runId);
    this.waiting.delete(runId);
    for (const w of set ?? []) w.ended?.();
  }
}
