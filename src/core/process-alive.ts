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
