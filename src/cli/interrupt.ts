import { INTERRUPT_SIGNALS, interruptedError, type InterruptSignal } from '../core/cancel.js';
import { isLifeboatError, type LifeboatError } from '../core/errors.js';

/**
 * Commands that check the signal at safe points (between blocks, between
 * steps) and clean up after themselves. Others keep Node's default: the
 * signal ends the process at once, which is as safe as a kill -9.
 */
export const STOPS_AT_SAFE_POINTS: ReadonlySet<string> = new Set([
  'backup',
  'restore',
  'verify',
  'surebackup run',
  'surebackup job run',
  'sandbox start',
  'copy run',
  'mover',
]);

/**
 * Turns the first SIGINT or SIGTERM into an aborted signal (its reason is the
 * signal's name) so the run stops at its next safe point, removes its
 * temporary file and releases its lock. A second one ends the process at once:
 * the user will not wait, and the crash-safe file order plus the next run's
 * cleanup cover that as they cover a kill.
 */
export function catchInterrupts(): { readonly signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const names = Object.keys(INTERRUPT_SIGNALS) as InterruptSignal[];
  const handlers = names.map((name) => {
    const handler = (): void => {
      if (controller.signal.aborted) {
        process.stderr.write(`\nlifeboat: interrupted again (${name}): stopped at once; the next run removes what this one left\n`);
        process.exit(INTERRUPT_SIGNALS[name]);
      }
      process.stderr.write(`\nlifeboat: ${name}: stopping at the next safe point (send it again to stop at once)\n`);
      controller.abort(name);
    };
    process.on(name, handler);
    return { name, handler };
  });
  return {
    signal: controller.signal,
    dispose: () => {
      for (const h of handlers) process.off(h.name, h.handler);
    },
  };
}

/**
 * How a command that failed after an interrupt ends: with LFB_ERR_INTERRUPTED
 * and the signal's exit code (130 for SIGINT, 143 for SIGTERM), whatever
 * failed on the way out (a Ctrl-C on a terminal also ends the tools we
 * started, such as qemu-nbd, so the run may fail reading from them first).
 */
export function interruptOutcome(err: unknown, signal: AbortSignal): { readonly error: LifeboatError; readonly exit: number } | undefined {
  if (!signal.aborted) return undefined;
  const error = isLifeboatError(err, 'LFB_ERR_INTERRUPTED') ? err : interruptedError(signal);
  const name = error.details['signal'];
  return { error, exit: typeof name === 'string' && name in INTERRUPT_SIGNALS ? INTERRUPT_SIGNALS[name as InterruptSignal] : INTERRUPT_SIGNALS.SIGINT };
}
