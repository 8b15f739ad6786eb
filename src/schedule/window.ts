import { nextRunAfter, parseCron, type TimeWindow } from '../core/schedule-text.js';

/**
 * Daily time windows in a time zone: whether one is open at an instant, and
 * when it next opens or closes. Opening and closing times are read by croner
 * as daily cron expressions, so a window edge in a daylight-saving gap moves
 * to the first time after the gap, as the job's schedule does.
 */

const minuteFormats = new Map<string, Intl.DateTimeFormat>();

/** Minutes after local midnight of `at` (ms since the epoch) in `timeZone`. */
export function minuteOfDay(at: number, timeZone: string): number {
  let f = minuteFormats.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    minuteFormats.set(timeZone, f);
  }
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(new Date(at))) {
    if (p.type === 'hour') hour = Number(p.value);
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return hour * 60 + minute;
}

/** Whether the window is open at `at`: from its start (included) to its end (excluded), across midnight when end < start. */
export function windowOpen(w: TimeWindow, at: number, timeZone: string): boolean {
  const m = minuteOfDay(at, timeZone);
  return w.start < w.end ? m >= w.start && m < w.end : m >= w.start || m < w.end;
}

function edge(minutes: number): string {
  return `0 ${minutes % 60} ${Math.floor(minutes / 60)} * * *`;
}

/** The first time after `after` at which the window opens. */
export function nextWindowOpen(w: TimeWindow, after: number, timeZone: string): number {
  return nextRunAfter(parseCron(edge(w.start), '--window', timeZone), after)!;
}

/** The first time after `after` at which the window closes. */
export function nextWindowClose(w: TimeWindow, after: number, timeZone: string): number {
  return nextRunAfter(parseCron(edge(w.end), '--window', timeZone), after)!;
}
