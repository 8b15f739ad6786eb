import { LifeboatError } from '../core/errors.js';
import { checkBootSettings, DEFAULT_BOOT_TIMEOUT_S } from '../lab/lab-group.js';
import type { CommandContext } from './command.js';
import { optionalString } from './command.js';

export { DEFAULT_BOOT_TIMEOUT_S };

/** The flags `surebackup run`, `surebackup job create|set` and `sandbox start` share for booting a lab's VMs, checked before anything is made. */
export function labBootFlags(ctx: CommandContext): { bootTimeoutS: number; serialPattern?: string; accel?: 'kvm' | 'tcg' } {
  const timeoutText = optionalString(ctx, 'timeout');
  const bootTimeoutS = timeoutText === undefined ? DEFAULT_BOOT_TIMEOUT_S : Number(timeoutText);
  if (!Number.isFinite(bootTimeoutS) || bootTimeoutS <= 0)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--timeout must be a positive number of seconds, not "${timeoutText}"`);
  const accel = optionalString(ctx, 'accel');
  if (accel !== undefined && accel !== 'kvm' && accel !== 'tcg')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--accel must be kvm or tcg, not "${accel}"`);
  const serialPattern = optionalString(ctx, 'serial-pattern');
  checkBootSettings(bootTimeoutS, serialPattern);
  return { bootTimeoutS, ...(serialPattern !== undefined ? { serialPattern } : {}), ...(accel !== undefined ? { accel } : {}) };
}
