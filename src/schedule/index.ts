export {
  AUTOMATIC_TRIGGERS,
  DEFAULT_MAX_TASKS,
  FIRE_COUNT_LIMIT,
  RUN_STATES,
  RUN_TRIGGERS,
  decide,
  type FireNote,
  type KnownRun,
  type RunState,
  type RunToQueue,
  type RunTrigger,
  type ScheduleDecision,
  type ScheduleInput,
  type ScheduledJob,
} from './scheduler.js';
export { minuteOfDay, nextWindowClose, nextWindowOpen, windowOpen } from './window.js';
export {
  DEFAULT_RETRIES,
  DEFAULT_RETRY_DELAY,
  localTimeZone,
  nextFire,
  parseCron,
  parseDuration,
  parseWindow,
  type TimeWindow,
} from '../core/schedule-text.js';
