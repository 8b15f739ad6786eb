/**
 * A child process of lock-file.test: takes the lock `iterations` times and,
 * inside it, adds one to a shared counter the slow way (read, pause, write),
 * so two holders at once lose an update. About half the time it leaves the
 * lock as a killed holder would: a lock file naming a process that is gone.
 *   node lock-worker.js <lock> <counter> <marker> <iterations> <deadPid>
 */
import { open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { LockFile } from '../src/storage/lock-file.js';

const [lockPath, counterPath, markerPath, iterationsText, deadPidText] = process.argv.slice(2) as [string, string, string, string, string];
let overlaps = 0;
for (let i = 0; i < Number(iterationsText); i++) {
  const lock = await LockFile.acquire(lockPath, 'test lock', { waitMs: 120_000, pollMs: 2 });
  // The marker is created exclusively: finding it means another process is inside too.
  const marker = await open(markerPath, 'wx').catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
    overlaps++;
    return undefined;
  });
  const count = Number(await readFile(counterPath, 'utf8'));
  await new Promise((r) => setTimeout(r, 1));
  await writeFile(counterPath, String(count + 1));
  if (marker) {
    await marker.close();
    await unlink(markerPath);
  }
  if (Math.random() < 0.5) await lock.release();
  else {
    // Die holding it: the lock file now names a process that no longer exists.
    const tmp = `${lockPath}.dead-${process.pid}`;
    await writeFile(tmp, JSON.stringify({ pid: Number(deadPidText), host: hostname(), since: new Date().toISOString() }));
    await rename(tmp, lockPath);
  }
}
process.stdout.write(JSON.stringify({ overlaps }));
