/**
 * Wall time of a long run, step by step: a run's report says where its time
 * went (opening the source, moving data, committing, retention), so a slow
 * run can be explained without a profiler.
 */
export class StepTimes {
  private last = performance.now();
  private readonly ms = new Map<string, number>();

  /** Ends the step that began at the previous lap, charging its time to `step`. */
  lap(step: string): void {
    const now = performance.now();
    this.ms.set(step, (this.ms.get(step) ?? 0) + (now - this.last));
    this.last = now;
  }

  /** Milliseconds by step, in the order the steps first ended. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.ms].map(([k, v]) => [k, Math.round(v * 10) / 10]));
  }
}
