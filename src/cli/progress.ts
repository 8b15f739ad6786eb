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

/** Measures one transfer from its creation; `line` says where it stands. */
export class ProgressMeter {
  private readonly startedNs = process.hrtime.bigint();

  line(bytesDone: number, bytesTotal: number): string {
    const secs = Number(process.hrtime.bigint() - this.startedNs) / 1e9;
    const pct = Math.floor((100 * bytesDone) / Math.max(1, bytesTotal));
    const base = `${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)} (${pct}%)`;
    // The first half second says little about the rate.
    if (secs < 0.5 || bytesDone <= 0) return base;
    const rate = bytesDone / secs;
    return `${base}, ${formatRate(rate)}, ETA ${formatEta((bytesTotal - bytesDone) / rate)}`;
  }
}
