import { LifeboatError } from '../core/errors.js';
import { sha256 } from '../format/checksum.js';
import type { Storage, StorageFile } from '../storage/storage.js';

/**
 * The overlay's map: which granules the overlay holds, as an append-only log
 * (docs/design.md §Overlay). A 32-byte header (magic "LFOM", granule size,
 * disk size), then batches: magic "LFBM", a granule count n ≤ BATCH_MAX, the
 * first 8 bytes of the SHA-256 of the list, and n granule numbers (u64 LE).
 * Replay applies whole, valid batches in order and stops at the first torn
 * or damaged one; the next append overwrites it.
 */
export const MAP_MAGIC = 0x4c464f4d; // "LFOM"
export const BATCH_MAGIC = 0x4c46424d; // "LFBM"
export const MAP_HEADER = 32;
const BATCH_HEAD = 16;
/** Granules per batch: a batch is at most 512 KiB, whatever the disk's size. */
export const BATCH_MAX = 65536;
/** Replay reads the log in windows of this size, never whole. */
const WINDOW = 1024 * 1024;

export function mapHeader(granule: number, diskSize: number): Buffer {
  const h = Buffer.alloc(MAP_HEADER);
  h.writeUInt32LE(MAP_MAGIC, 0);
  h.writeUInt32LE(granule, 4);
  h.writeBigUInt64LE(BigInt(diskSize), 8);
  return h;
}

/** The batches that log `granules` (split at BATCH_MAX), back to back in one buffer. */
export function encodeBatches(granules: readonly number[]): Buffer {
  const count = Math.ceil(granules.length / BATCH_MAX);
  const out = Buffer.alloc(count * BATCH_HEAD + 8 * granules.length);
  let at = 0;
  for (let i = 0; i < granules.length; i += BATCH_MAX) {
    const part = granules.slice(i, i + BATCH_MAX);
    out.writeUInt32LE(BATCH_MAGIC, at);
    out.writeUInt32LE(part.length, at + 4);
    part.forEach((g, j) => out.writeBigUInt64LE(BigInt(g), at + BATCH_HEAD + 8 * j));
    sha256(out.subarray(at + BATCH_HEAD, at + BATCH_HEAD + 8 * part.length)).copy(out, at + 8, 0, 8);
    at += BATCH_HEAD + 8 * part.length;
  }
  return out;
}

/**
 * Reads the log of `map` into `written` (one bit per granule); returns where
 * the valid log ends and how many batches it holds. Memory: one window.
 */
export async function replayMap(
  map: StorageFile,
  path: string,
  granule: number,
  diskSize: number,
  written: Uint8Array,
): Promise<{ end: number; batches: number; bytes: number }> {
  const size = await map.size();
  const head = Buffer.alloc(MAP_HEADER);
  await map.pread(head, 0);
  if (head.readUInt32LE(0) !== MAP_MAGIC) throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${path}: not an overlay map`, { details: { path } });
  if (head.readUInt32LE(4) !== granule || Number(head.readBigUInt64LE(8)) !== diskSize) {
    throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${path}: made for another disk size or granule`, { details: { path } });
  }
  const granules = Math.ceil(diskSize / granule);
  let window = Buffer.alloc(0);
  let windowAt = MAP_HEADER;
  /** The bytes [at, at + n) of the log, or undefined past its end. */
  const bytesAt = async (at: number, n: number): Promise<Buffer | undefined> => {
    if (at + n > size) return undefined;
    if (at < windowAt || at + n > windowAt + window.length) {
      window = Buffer.alloc(Math.min(Math.max(n, WINDOW), size - at));
      windowAt = at;
      await map.pread(window, at);
    }
    return window.subarray(at - windowAt, at - windowAt + n);
  };
  let at = MAP_HEADER;
  let batches = 0;
  for (;;) {
    const h = await bytesAt(at, BATCH_HEAD);
    if (!h || h.readUInt32LE(0) !== BATCH_MAGIC) break;
    const n = h.readUInt32LE(4);
    if (n > BATCH_MAX) break;
    const digest = Buffer.from(h.subarray(8, 16));
    const list = await bytesAt(at + BATCH_HEAD, 8 * n);
    if (!list || !sha256(list).subarray(0, 8).equals(digest)) break;
    for (let i = 0; i < n; i++) {
      const g = Number(list.readBigUInt64LE(8 * i));
      if (g < granules) written[g >> 3]! |= 1 << (g & 7);
    }
    at += BATCH_HEAD + 8 * n;
    batches += 1;
  }
  return { end: at, batches, bytes: size };
}

/**
 * Rewrites the log as the fewest batches that list `written`: a new file,
 * synced, renamed over the old one, folder synced. A crash at any step leaves
 * the old log or the new one, both complete.
 */
export async function compactMap(storage: Storage, dir: string, path: string, header: Buffer, written: Uint8Array): Promise<number> {
  const tmp = `${path}.compact`;
  const f = await storage.open(tmp, 'replace');
  let end = MAP_HEADER;
  try {
    await f.pwrite(header, 0);
    let list: number[] = [];
    const out = async (): Promise<void> => {
      const b = encodeBatches(list);
      await f.pwrite(b, end);
      end += b.length;
      list = [];
    };
    for (let i = 0; i < written.length; i++) {
      for (let x = written[i]!; x; x &= x - 1) {
        list.push(i * 8 + (31 - Math.clz32(x & -x)));
        if (list.length === BATCH_MAX) await out();
      }
    }
    if (list.length > 0) await out();
    await f.sync();
  } finally {
    await f.close();
  }
  await storage.rename(tmp, path);
  await storage.syncDir(dir);
  return end;
}
