/**
 * Fault injection for the crash tests: every durable step (write, fsync,
 * rename, unlink) of the storage layer calls crashPoint(). When the
 * environment variable LIFEBOAT_CRASH_AT=N is set, the N-th call kills the
 * process with SIGKILL — a real kill -9 at a precisely chosen moment, so a test
 * can walk through every step of a backup or merge. Unset, this costs one
 * comparison per call.
 */
import { writeFileSync } from 'node:fs';

const target = Number(process.env['LIFEBOAT_CRASH_AT'] ?? '0');
const report = process.env['LIFEBOAT_CRASH_REPORT'];
let count = 0;
// With LIFEBOAT_CRASH_REPORT=<file>, a run that ends normally writes how many
// crash points it passed, so a test knows the range of moments to kill at.
if (report !== undefined && report !== '') process.on('exit', () => writeFileSync(report, String(count)));

export function crashPoint(): void {
  count += 1;
  if (target > 0 && count >= target) process.kill(process.pid, 'SIGKILL');
}

/** How many crash points this process passed (reported by tests via LIFEBOAT_CRASH_COUNT_FILE). */
export function crashPointsPassed(): number {
  return count;
}
