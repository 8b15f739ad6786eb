import { close as fsClose, open as fsOpen, readFileSync, readv, writev } from 'node:fs';
import { readFully } from '../storage/storage.js';
import { readNow } from '../storage/read-now.js';

/**
 * Descriptors kept open at most, out of the process's limit on open files: a
 * quarter of it, the rest left to sockets and backup files. Node raises its
 * soft limit to the hard one when it starts (20,000 or more on most Linux
 * systems), so the disk cache's 2 GiB default (about 2,000 files of 1 MiB
 * blocks) stays open whole. Measured 2026-12-06 on the 1 GiB sample disk,
 * warm disk cache: 4,096 kept against 128 took random 4 KiB reads from
 * 15.5-17k to 21-22k IOPS and a warm `nbdcopy` pass from 0.93-1.11 s to
 * 0.74-0.88 s (an open and a close per block cost two more trips through
 * libuv's thread pool).
 */
export const OPEN_FILES_KEPT = descriptorsKept(openFileLimit());

/** A quarter of `limit`, between 128 and 8192; 128 when the limit is not known. */
export function descriptorsKept(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return limit === Infinity ? 8192 : 128;
  return Math.max(128, Math.min(8192, Math.floor(limit / 4)));
}

/** The soft limit on open files (Linux's /proc/self/limits; Infinity if unlimited), or undefined where it cannot be read. */
export function openFileLimit(limits?: string): number | undefined {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m) return undefined;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

interface OpenFile {
  readonly fd: Promise<number>;
  users: number;
  /** Out of the table: closed once the last user is done. */
  dropped: boolean;
}

/**
 * Open descriptors of the disk cache's files, least recently used out. A
 * random 4 KiB read of a kept block is then one pread instead of an open, a
 * pread and a close (each a trip through libuv's thread pool, and together
 * most of the main thread's time per read). A file removed while open stays
 * readable through its descriptor until it is closed: what it holds is still
 * the block it was filed under.
 */
export class OpenFiles {
  private readonly table = new Map<string, OpenFile>();

  constructor(private readonly max = OPEN_FILES_KEPT) {}

  /** Runs `fn` with a descriptor of `path` (opened if need be), kept open after unless it is dropped meanwhile. */
  async use<T>(key: string, path: string, fn: (fd: number) => Promise<T>): Promise<T> {
    let f = this.table.get(key);
    if (f === undefined) {
      f = { fd: openRead(path), users: 0, dropped: false };
      this.table.set(key, f);
      this.evict();
    } else {
      this.table.delete(key);
      this.table.set(key, f);
    }
    f.users += 1;
    try {
      return await fn(await f.fd);
    } catch (err) {
      // A failed open (or read) is not kept: the next read opens afresh.
      void this.drop(key, f);
      throw err;
    } finally {
      f.users -= 1;
      if (f.dropped && f.users === 0) void closeLater(f.fd);
    }
  }

  /** Keeps `fd`, a descriptor the caller opened on the file filed under `key` (one just written), in place of any older one. */
  adopt(key: string, fd: number): void {
    this.forget(key);
    this.table.set(key, { fd: Promise.resolve(fd), users: 0, dropped: false });
    this.evict();
  }

  /** Forgets the file's descriptor (the file is being removed or was found damaged): closed once idle. */
  forget(key: string): void {
    const f = this.table.get(key);
    if (f !== undefined) void this.drop(key, f);
  }

  /** Closes every descriptor once its reads are done; resolves when those not in use are closed. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.table].map(([key, f]) => this.drop(key, f)));
  }

  get size(): number {
    return this.table.size;
  }

  /** Out of the table; closed now if idle (the promise: when it is), else by its last user. */
  private drop(key: string, f: OpenFile): Promise<void> | undefined {
    if (f.dropped) return undefined;
    f.dropped = true;
    if (this.table.get(key) === f) this.table.delete(key);
    return f.users === 0 ? closeLater(f.fd) : undefined;
  }

  private evict(): void {
    for (const [key, f] of this.table) {
      if (this.table.size <= this.max) return;
      void this.drop(key, f);
    }
  }
}

function openRead(path: string): Promise<number> {
  const p = new Promise<number>((resolve, reject) => fsOpen(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
  // A failed open is seen by its user; the table's copy of the promise must not count as unhandled.
  p.catch(() => undefined);
  return p;
}

/** Closes the descriptor once it is open; resolves when it is closed (or never opened). */
function closeLater(fd: Promise<number>): Promise<void> {
  return fd.then(
    (n) => new Promise<void>((resolve) => fsClose(n, () => resolve())),
    () => undefined,
  );
}

/**
 * Fills each part's buffer from its position in the file; returns the counts
 * read (less only at end of file). Parts that follow one another in the file
 * are read with one readv: one trip through the thread pool, not one per part,
 * and none when the page cache holds them all (readNow).
 */
export async function readParts(fd: number, parts: readonly { into: Buffer; position: number }[]): Promise<number[]> {
  if (parts.length === 0) return [];
  const contiguous = parts.every((p, i) => i === 0 || p.position === parts[i - 1]!.position + parts[i - 1]!.into.length);
  if (!contiguous) {
    const counts: number[] = [];
    for (const { into, position } of parts) counts.push(await readFully(fd, into, position));
    return counts;
  }
  const buffers = parts.map((p) => p.into);
  const total = buffers.reduce((sum, b) => sum + b.length, 0);
  const start = parts[0]!.position;
  let n = readNow(fd, buffers, start);
  if (n < total) {
    const rest = after(buffers, n);
    n += await new Promise<number>((resolve, reject) => readv(fd, rest, start + n, (err, bytes) => (err ? reject(err) : resolve(bytes))));
  }
  const counts: number[] = [];
  for (const { into, position } of parts) {
    // A short readv (rare: a signal, or the end of the file) is finished part by part.
    let got = Math.min(n, into.length);
    n -= got;
    if (got < into.length && n === 0) got += await readFully(fd, into.subarray(got), position + got);
    counts.push(got);
  }
  return counts;
}

/** The buffers' bytes after the first `n`, as views. */
function after(buffers: readonly Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = n;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    rest.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return rest;
}

/** Writes the buffers one after another from `position`: one writev, then more only if the file system takes less. */
export async function writeParts(fd: number, parts: readonly Buffer[], position: number): Promise<void> {
  let rest = parts.filter((p) => p.length > 0);
  let at = position;
  while (rest.length > 0) {
    const n = await new Promise<number>((resolve, reject) => writev(fd, rest, at, (err, bytes) => (err ? reject(err) : resolve(bytes))));
    if (n === 0) throw new Error('the file system took no bytes');
    at += n;
    rest = after(rest, n);
  }
}
