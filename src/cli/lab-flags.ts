import { LifeboatError } from '../core/errors.js';
import type { CommandContext } from './command.js';
import { optionalString } from './command.js';

/** Seconds a lab VM has to pass its heartbeat unless --timeout says otherwise (`surebackup run`, `sandbox start`). */
export const DEFAULT_BOOT_TIMEOUT_S = 300;

/** The flags `surebackup run` and `sandbox start` share for booting a lab's VMs, checked before anything is made. */
export function labBootFlags(ctx: CommandContext): { bootTimeoutS: number; serialPattern?: string; accel?: 'kvm' | 'tcg' } {
  const timeoutText = optionalString(ctx, 'timeout');
  const bootTimeoutS = timeoutText === undefined ? DEFAULT_BOOT_TIMEOUT_S : Number(timeoutText);
  if (!Number.isFinite(bootTimeoutS) || bootTimeoutS <= 0)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--timeout must be a positive number of seconds, not "${timeoutText}"`);
  const accel = optionalString(ctx, 'accel');
  if (accel !== undefined && accel !== 'kvm' && accel !== 'tcg')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--accel must be kvm or tcg, not "${accel}"`);
  const serialPattern = optionalString(ctx, 'serial-pattern');
  if (serialPattern !== undefined) {
    try {
      new RegExp(serialPattern);
    } catch (err) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--serial-pattern is not a regular expression: ${(err as Error).message}`);
    }
  }
  return { bootTimeoutS, ...(serialPattern !== undefined ? { serialPattern } : {}), ...(accel !== undefined ? { accel } : {}) };
}
