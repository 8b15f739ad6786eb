/**
 * Progress lines for people on a terminal: bytes done of total, the rate
 * since the start and the time left at that rate.
 */
import { formatBytes } from '../core/units.js';

/** Bytes per second in decimal units (as disks and networks are rated), three significant digits. */
export function formatRate(bytesPerSecond: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Math.max(0, bytesPerSecond);
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return `${v.toFixed(digits)} ${units[i]}/s`;
}

/** Seconds left, rounded to what a person reads: "45 s", "2 min 5 s", "3 h 1 min"; "?" when unknown. */
export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * Measures one transfer from the first progress it sees: a resumed copy that
 * starts half done is rated by what it moves now, not by what was done before.
 */
export class ProgressMeter {
  private first: { seconds: number; done: number } | undefined;

  /** `now`: seconds on a monotonic clock (a parameter so tests can drive it). */
  constructor(private readonly now: () => number = () => Number(process.hrtime.bigint()) / 1e9) {}

  /** "12.0 MiB / 64.0 MiB (18%), 41.9 MB/s, ETA 1 s" (rate and ETA once half a second has passed). */
  line(bytesDone: number, bytesTotal: number): string {
    const pct = Math.floor((100 * bytesDone) / Math.max(1, bytesTotal));
    const base = `${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)} (${pct}%)`;
    const rate = this.rate(bytesDone);
    return rate === undefined ? base : `${base}, ${formatRate(rate)}, ETA ${formatEta((bytesTotal - bytesDone) / rate)}`;
  }

  /** Time left for `done` of `total` units of any kind (blocks, bytes), at the rate seen so far; undefined until there is one. */
  eta(done: number, total: number): string | undefined {
    const rate = this.rate(done);
    return rate === undefined ? undefined : formatEta((total - done) / rate);
  }

  private rate(done: number): number | undefined {
    const t = this.now();
    if (this.first === undefined) this.first = { seconds: t, done };
    const secs = t - this.first.seconds;
    const moved = done - this.first.done;
    // The first half second says little about the rate.
    return secs < 0.5 || moved <= 0 ? undefined : moved / secs;
  }
}
