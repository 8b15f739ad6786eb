import { throwIfInterrupted } from '../core/cancel.js';
import { processAlive } from '../core/process-alive.js';
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { hostname } from 'node:os';
import { LifeboatError, fromFsError } from '../core/errors.js';
import type { Storage } from './storage.js';

/**
 * An exclusive lock held as a file created with O_EXCL. It records the
 * holder's pid and host; a lock whose process is gone (kill -9) is stale and
 * is taken over, so a crashed run never blocks the next one.
 *
 * Taking over is race-free: a lock file is never rewritten in place (it is
 * written under a private name and hard-linked into place), so its inode and
 * content identify it (`key`). Only the process that created
 * `<lock>.break-<key>` exclusively may remove the lock file with that key, and
 * only after seeing, while holding it, that the lock file still has that key
 * and a dead holder. Two processes that both saw the same stale lock cannot
 * both remove it, and neither can remove the fresh lock that replaced it. A
 * breaker that died holding its break file is succeeded one level up
 * (`<break file>-<its key>`), so no file is ever removed on the strength of a
 * look that may be out of date.
 */
export class LockFile {
  private constructor(
    readonly path: string,
    private readonly nonce: string,
  ) {}

  /** `signal`: a stop while it waits ends the wait (LFB_ERR_INTERRUPTED) within a poll, holding nothing. */
  static async acquire(path: string, what: string, opts: { waitMs?: number; pollMs?: number; signal?: AbortSignal | undefined } = {}): Promise<LockFile> {
    const deadline = Date.now() + (opts.waitMs ?? 0);
    const pollMs = opts.pollMs ?? 200;
    const nonce = randomBytes(8).toString('hex');
    for (;;) {
      throwIfInterrupted(opts.signal);
      if (await createExclusive(path, holderText(nonce), path)) return new LockFile(path, nonce);
      const seen = await look(path);
      if (seen === undefined) continue; // released between our attempt and our look
      if (isStale(seen.holder)) {
        if (await breakStale(path, seen)) continue;
        // Another live process is taking it over: see who wins.
        await sleep(pollMs);
        continue;
      }
      const holder = seen.holder!;
      if (Date.now() >= deadline) {
        throw new LifeboatError(
          'LFB_ERR_JOB_LOCKED',
          `${what} is busy: process ${holder.pid} on ${holder.host} holds ${path} since ${holder.since}; wait for it to finish (or pass --wait)`,
          { details: { path, pid: holder.pid, host: holder.host } },
        );
      }
      await sleep(pollMs);
    }
  }

  /** Removes the lock file if it is still ours (it always is, unless someone removed it by hand). */
  async release(): Promise<void> {
    const seen = await look(this.path).catch(() => undefined);
    if (seen?.holder?.nonce === this.nonce) await unlink(this.path).catch(() => undefined);
  }
}

/** The lock `path` of a file of `storage`: on its host path (made if need be) when the storage keeps files elsewhere. */
export async function lockAt(
  storage: Storage,
  path: string,
  what: string,
  opts: { waitMs?: number; pollMs?: number; signal?: AbortSignal | undefined } = {},
): Promise<LockFile> {
  const at = storage.hostPath?.(path) ?? path;
  if (at !== path)
    await mkdir(dirname(at), { recursive: true, mode: 0o700 }).catch((err: unknown) => Promise.reject(fromFsError(err, 'create folder', dirname(at))));
  return LockFile.acquire(at, what, opts);
}

/**
 * Who holds the lock `path` of a file of `storage` now (undefined when nobody does, or its file says nothing
 * readable): for a message, never for a decision (it may change the moment after).
 */
export async function lockHolder(storage: Storage, path: string): Promise<{ pid: number; host: string; since: string } | undefined> {
  const h = (await look(storage.hostPath?.(path) ?? path))?.holder;
  return h === undefined ? undefined : { pid: h.pid, host: h.host, since: h.since };
}

interface Holder {
  pid: number;
  host: string;
  since: string;
  /** Random per acquisition: no two lock files ever have the same content. */
  nonce?: string;
}

/** What a lock (or break) file says, and `key`: this one file, from its inode and content. */
interface Seen {
  readonly holder: Holder | undefined;
  readonly key: string;
}

function holderText(nonce: string): string {
  return JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), nonce } satisfies Holder);
}

/**
 * Creates `path` with `text`, all at once; false if it exists. The content is
 * written under a private name beside `lock` first: `<lock>.<pid>.<random>.tmp`,
 * which no break file name starts with (removeBreakFiles goes by prefix) and
 * which a job folder's cleanup of `.*.tmp` leftovers does not touch.
 */
async function createExclusive(path: string, text: string, lock: string): Promise<boolean> {
  const tmp = `${lock}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { flag: 'wx' });
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw fromFsError(err, 'create lock', path);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** The file at `path` (content and inode read through one descriptor), or undefined if there is none. */
async function look(path: string): Promise<Seen | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(err, 'read lock', path);
  }
  try {
    const { ino } = await fh.stat();
    const text = await fh.readFile('utf8');
    return { holder: parseHolder(text), key: createHash('sha256').update(`${ino}\n${text}`).digest('hex').slice(0, 16) };
  } finally {
    await fh.close();
  }
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Holder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : undefined;
  } catch {
    // Unreadable: emptied by a power loss before it reached the disk.
    return undefined;
  }
}

function isStale(holder: Holder | undefined): boolean {
  return holder === undefined || (holder.host === hostname() && !processAlive(holder.pid));
}

/** Levels of dead breakers to climb before giving up (each one needs a kill at a precise moment). */
const MAX_BREAK_LEVELS = 8;

/**
 * Removes the stale lock file seen as `stale`, if it is still there. Returns
 * false when a live process is already doing so (the caller waits and looks
 * again), true when the caller should simply try again.
 */
async function breakStale(path: string, stale: Seen): Promise<boolean> {
  let name = `${path}.break-${stale.key}`;
  for (let level = 0; level < MAX_BREAK_LEVELS;) {
    if (await createExclusive(name, holderText(randomBytes(8).toString('hex')), path)) {
      try {
        const now = await look(path);
        if (now?.key === stale.key && isStale(now.holder)) {
          await unlink(path).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw fromFsError(err, 'remove stale lock', path);
          });
          await removeBreakFiles(path, stale.key);
        }
      } finally {
        await unlink(name).catch(() => undefined);
      }
      return true;
    }
    const breaker = await look(name);
    if (breaker === undefined) continue; // it just finished; the lock file has changed
    if (!isStale(breaker.holder)) return false;
    // That breaker died holding its break file: everyone who sees it dead competes for the next name.
    name = `${name}-${breaker.key}`;
    level++;
  }
  throw new LifeboatError(
    'LFB_ERR_JOB_LOCKED',
    `the stale lock ${path} cannot be taken over: ${MAX_BREAK_LEVELS} processes died taking it over; remove ${path} and ${path}.break-* by hand`,
    { details: { path } },
  );
}

/**
 * Once the lock file with `key` is gone, every break file for it is litter:
 * that key never comes back, so whoever holds one finds nothing to remove.
 */
async function removeBreakFiles(path: string, key: string): Promise<void> {
  const prefix = `${basename(path)}.break-${key}`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const n of names) if (n.startsWith(prefix)) await unlink(join(dirname(path), n)).catch(() => undefined);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
