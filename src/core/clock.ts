/**
 * The only place that reads the wall clock. LIFEBOAT_NOW (an ISO 8601 time)
 * pins "now" for every command, so retention and schedules can be tested.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export function fixedClock(at: Date): Clock {
  return { now: () => new Date(at.getTime()) };
}

/** The clock the process should use: LIFEBOAT_NOW if set, else the system's. */
export function clockFromEnv(env: NodeJS.ProcessEnv = process.env): Clock {
  const pinned = env['LIFEBOAT_NOW'];
  if (pinned === undefined || pinned === '') return systemClock;
  const at = new Date(pinned);
  if (Number.isNaN(at.getTime())) {
    throw new Error(`LIFEBOAT_NOW is not an ISO 8601 time: ${pinned}`);
  }
  return fixedClock(at);
}

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export function weekdayOf(d: Date): Weekday {
  return WEEKDAYS[d.getUTCDay()] as Weekday;
}
