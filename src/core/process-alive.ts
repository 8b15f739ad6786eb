import { readFileSync } from 'node:fs';

/**
 * Whether a process with this pid exists (signal 0 delivers nothing, it only
 * checks). EPERM means it exists but belongs to another user. A pid can be
 * reused: callers that must know it is *their* process check more (its
 * start time or command line).
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The fields of /proc/<pid>/stat from the 3rd on (the state is [0], the parent [1], the start time [19]), read
 * after the command name (which may hold spaces and parentheses); undefined when there is no such process.
 */
export function procStatFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Whether a process with this pid exists and has not ended: a zombie (ended, waiting for its parent to reap it,
 * which for an orphan can take a while) is not running.
 */
export function processRunning(pid: number): boolean {
  if (!processAlive(pid)) return false;
  // Z for a zombie, X for dead; no /proc entry: gone since the check above.
  const state = procStatFields(pid)?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/**
 * When the process of this pid started (field 22 of /proc/<pid>/stat, in clock ticks since boot), or undefined
 * when there is none: with the pid, it names one process, whatever later reuses the pid.
 */
export function processStartTime(pid: number): string | undefined {
  return procStatFields(pid)?.[19];
}
