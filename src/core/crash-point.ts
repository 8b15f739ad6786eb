/**
 * Fault injection for the crash tests: every durable step (write, fsync,
 * rename, unlink) of the storage layer calls crashPoint(). When the
 * environment variable LIFEBOAT_CRASH_AT=N is set, the N-th call kills the
 * process with SIGKILL — a real kill -9 at a precisely chosen moment, so a test
 * can walk through every step of a backup or merge. Unset, this costs one
 * comparison per call.
 */
const target = Number(process.env['LIFEBOAT_CRASH_AT'] ?? '0');
let count = 0;

export function crashPoint(): void {
  if (target <= 0) return;
  count += 1;
  if (count >= target) process.kill(process.pid, 'SIGKILL');
}

/** How many crash points this process passed (reported by tests via LIFEBOAT_CRASH_COUNT_FILE). */
export function crashPointsPassed(): number {
  return count;
}
