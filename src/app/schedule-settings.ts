import { formatDuration, formatWindow, parseDuration, parseWindow } from '../core/schedule-text.js';
import type { JobSettings } from '../repository/index.js';

/** The schedule settings `job create` and `job set` take; null clears a setting (no schedule, no window, no chaining). */
export interface ScheduleSettingsChange {
  schedule?: string | null | undefined;
  window?: string | null | undefined;
  retries?: number | undefined;
  retryDelay?: string | undefined;
  after?: string | null | undefined;
  disabled?: boolean | undefined;
  webhook?: string | null | undefined;
  mover?: string | null | undefined;
}

type ScheduleKey = 'schedule' | 'window' | 'retries' | 'retryDelay' | 'after' | 'disabled' | 'webhook' | 'mover';

/** The settings as job.json stores them: window and delay in their canonical form, cleared ones (and `disabled: false`) undefined. */
export function scheduleSettings(c: ScheduleSettingsChange): Pick<JobSettings, ScheduleKey> {
  const out: { -readonly [K in ScheduleKey]?: JobSettings[K] } = {};
  if (c.schedule !== undefined) out.schedule = c.schedule === null ? undefined : c.schedule.trim();
  if (c.window !== undefined) out.window = c.window === null ? undefined : formatWindow(parseWindow(c.window));
  if (c.retries !== undefined) out.retries = c.retries;
  if (c.retryDelay !== undefined) out.retryDelay = formatDuration(parseDuration(c.retryDelay));
  if (c.after !== undefined) out.after = c.after ?? undefined;
  if (c.disabled !== undefined) out.disabled = c.disabled || undefined;
  if (c.webhook !== undefined) out.webhook = c.webhook ?? undefined;
  if (c.mover !== undefined) out.mover = c.mover ?? undefined;
  return out;
}

export function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
