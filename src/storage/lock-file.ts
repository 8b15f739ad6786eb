import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { LifeboatError, fromFsError } from '../core/errors.js';

/**
 * An exclusive lock held as a file created with O_EXCL. It records the
 * holder's pid and host; a lock whose process is gone (kill -9) is stale and
 * is taken over, so a crashed run never blocks the next one.
 */
export class LockFile {
  private constructor(readonly path: string) {}

  static async acquire(path: string, what: string, opts: { waitMs?: number } = {}): Promise<LockFile> {
    const deadline = Date.now() + (opts.waitMs ?? 0);
    for (;;) {
      // The content is written under a private name and hard-linked into place, so
      // a lock file is never seen half-written.
      const tmp = `${path}.${process.pid}.tmp`;
      try {
        await writeFile(tmp, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
        await link(tmp, path);
        return new LockFile(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFsError(err, 'create lock', path);
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
      const holder = await readHolder(path);
      if (holder === undefined || (holder.host === hostname() && !processAlive(holder.pid))) {
        // Stale: its owner died without releasing it. Remove and try again.
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (Date.now() >= deadline) {
        throw new LifeboatError(
          'LFB_ERR_JOB_LOCKED',
          `${what} is busy: process ${holder.pid} on ${holder.host} holds ${path} since ${holder.since}; wait for it to finish (or pass --wait)`,
          { details: { path, pid: holder.pid } },
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async release(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
  }
}

interface Holder {
  pid: number;
  host: string;
  since: string;
}

async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    const h = JSON.parse(await readFile(path, 'utf8')) as Holder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    // Unreadable or half-written by a process killed while creating it.
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
