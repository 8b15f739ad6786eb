/**
 * Cooperative cancellation of long runs (backup, restore, verify). The CLI
 * turns SIGINT and SIGTERM into an aborted AbortSignal whose reason is the
 * signal's name; a run checks it only at safe points, where throwing leaves
 * nothing behind that its own cleanup (temporary files, the job lock) does
 * not remove. A kill -9 is still handled as before: by the crash-safe file
 * order and the next run's cleanup.
 */
import { LifeboatError } from './errors.js';

/** The signals a run stops for, with the exit code a shell gives a process ended by each (128 + its number). */
export const INTERRUPT_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
export type InterruptSignal = keyof typeof INTERRUPT_SIGNALS;

export function interruptedError(signal: AbortSignal): LifeboatError {
  const reason: unknown = signal.reason;
  // A stop with its own words (the service: a closing window, a request, the server stopping).
  if (reason instanceof LifeboatError)
    return new LifeboatError('LFB_ERR_INTERRUPTED', `${reason.message}; the run stopped at a safe point and left no temporary file or lock`, {
      details: reason.details,
    });
  const name = typeof reason === 'string' && reason in INTERRUPT_SIGNALS ? reason : 'SIGINT';
  return new LifeboatError('LFB_ERR_INTERRUPTED', `interrupted by ${name}; the run stopped at a safe point and left no temporary file or lock`, {
    details: { signal: name },
  });
}

/** Throws LFB_ERR_INTERRUPTED when the signal was aborted: call it where stopping is safe. */
export function throwIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw interruptedError(signal);
}
