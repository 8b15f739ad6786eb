import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { LifeboatError } from '../core/errors.js';
import type { CodecName } from '../format/constants.js';
import type { BlockKeys } from '../crypto/seal.js';
import { frameBytesOf, type CompressionSetting } from './codec.js';

export interface BlockTask {
  readonly op: 'encode';
  readonly id: number;
  readonly buffer: ArrayBuffer;
  readonly length: number;
  readonly previousDigest: Uint8Array | null;
  readonly compression: CompressionSetting;
  /** An encrypted repository's keys: the digest is keyed and the stored bytes sealed. */
  readonly keys?: BlockKeys | undefined;
}

export interface BlockResult {
  readonly id: number;
  readonly digest: Buffer;
  readonly unchanged: boolean;
  readonly codec: CodecName;
  readonly stored: ArrayBuffer | null;
  /** The input buffer, handed back for reuse. */
  readonly buffer: ArrayBuffer;
}

export interface DecodeTask {
  readonly op: 'decode';
  readonly id: number;
  /** The stored bytes: the whole block's, or with `range.bounds`, those of the frames knownFrames() picks. */
  readonly stored: ArrayBuffer;
  readonly codec: CodecName;
  readonly rawLength: number;
  readonly digest: Uint8Array;
  /** Check the SHA-256 even when the frames carry their own checksums (health checks). */
  readonly strict?: boolean | undefined;
  /** Only this part of the block is wanted: the worker may decode just the frames that cover it. */
  readonly range?: DecodeRange | undefined;
  /** A sealed block: opened (its tag checked) before anything else. */
  readonly keys?: BlockKeys | undefined;
}

/** Check a stored block without keeping what it decodes to: the stored bytes come back as they went, to be written as they are. */
export interface VerifyTask {
  readonly op: 'verify';
  readonly id: number;
  readonly stored: ArrayBuffer;
  readonly codec: CodecName;
  readonly rawLength: number;
  readonly digest: Uint8Array;
  readonly keys?: BlockKeys | undefined;
}

/** problem is null when the block decompresses and matches its SHA-256; `stored` is the task's buffer, handed back. */
export interface VerifyResult {
  readonly id: number;
  readonly stored: ArrayBuffer;
  readonly problem: string | null;
}

/** Part of a block wanted; `bounds`: its frames' stored boundaries, from an earlier decode of it. */
export interface DecodeRange {
  readonly from: number;
  readonly to: number;
  readonly bounds?: Int32Array | undefined;
}

/**
 * The frames of a framed (zstd or lz4) block that cover `range` when its frame boundaries are
 * known: their indexes, and where they lie in the stored bytes. The reader
 * reads just [start, end) of the stored block; the worker decodes frames
 * first..last of it. Undefined: the whole stored block is needed.
 */
export function knownFrames(
  codec: CodecName,
  range: DecodeRange | undefined,
): { readonly first: number; readonly last: number; readonly start: number; readonly end: number } | undefined {
  const bounds = range?.bounds;
  // A sealed block has no bounds (its tag covers the whole stored block): it is always read whole.
  const frameBytes = frameBytesOf(codec);
  if (frameBytes === undefined || range === undefined || bounds === undefined) return undefined;
  const n = bounds.length - 1;
  const first = Math.min(n - 1, Math.floor(range.from / frameBytes));
  const last = Math.min(n - 1, Math.floor((range.to - 1) / frameBytes));
  return { first, last, start: bounds[first]!, end: bounds[last + 1]! };
}

/** The ArrayBuffer of exactly these bytes, to transfer: the buffer's own when it spans all of it, else a copy. */
export function ownArrayBuffer(b: Uint8Array): ArrayBuffer {
  return (b.byteOffset === 0 && b.buffer.byteLength === b.length ? b.buffer : b.buffer.slice(b.byteOffset, b.byteOffset + b.length)) as ArrayBuffer;
}

/** data is null when the block is damaged; problem says how. */
export interface DecodeResult {
  readonly id: number;
  readonly data: ArrayBuffer | null;
  readonly problem: string | null;
  /** Where `data` starts in the block: 0 for a whole block, a frame boundary for a range. */
  readonly start?: number;
  /** The block's frame boundaries in its stored bytes, when a range decode walked them. */
  readonly bounds?: Int32Array;
}

/**
 * A copy with its own 32-byte ArrayBuffer. Digests are views into a whole
 * block table, and postMessage clones a view's entire ArrayBuffer: without
 * this, every block sent to a worker would drag its table along.
 */
function detached(view: Uint8Array): Uint8Array {
  return new Uint8Array(view);
}

interface Pending {
  resolve: (r: never) => void;
  reject: (e: Error) => void;
}

/**
 * A fixed pool of hash-and-compress workers. Hashing and compressing are the
 * CPU-heavy steps of a backup; running them off the main thread keeps every
 * core busy while the main thread reads the source and writes the file.
 */
export class BlockWorkerPool {
  private readonly workers: Worker[] = [];
  /** Tasks posted to each worker and not yet answered. */
  private readonly queued: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private nextId = 1;
  private failed: Error | undefined;
  /** Settle when each worker has loaded its module (or failed to start): close() waits for them. */
  private readonly started: Promise<void>[] = [];

  constructor(size = Math.max(1, Math.min(8, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./block-worker.js', import.meta.url));
      let loaded: () => void = () => undefined;
      this.started.push(new Promise<void>((r) => (loaded = r)));
      w.once('error', () => loaded());
      w.once('exit', () => loaded());
      w.on('message', (m: { id: number; error?: string; ready?: true }) => {
        if (m.ready === true) return loaded();
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.queued[i]! -= 1;
        if (m.error !== undefined) p.reject(new LifeboatError('LFB_ERR_INTERNAL', `block worker: ${m.error}`));
        else p.resolve(m as never);
      });
      w.on('error', (e: Error) => this.fail(e));
      this.workers.push(w);
      this.queued.push(0);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private post<R>(make: (id: number) => BlockTask | DecodeTask | VerifyTask, transfer: ArrayBuffer[]): Promise<R> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    // The worker with the fewest tasks waiting (in turn among equals): blocks do not cost the same (a changed block
    // is compressed, an unchanged one only hashed), and taking turns blindly left one worker idle while the
    // other had a queue (a CBT incremental's 52 blocks: one worker half idle for its first 80 ms).
    let chosen = this.next;
    for (let k = 1; k < this.workers.length; k++) {
      const i = (this.next + k) % this.workers.length;
      if (this.queued[i]! < this.queued[chosen]!) chosen = i;
    }
    this.next = (chosen + 1) % this.workers.length;
    this.queued[chosen]! += 1;
    const w = this.workers[chosen]!;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: never) => void, reject });
      w.postMessage(make(id), transfer);
    });
  }

  /** Hash (and compress if changed) a block. Transfers `buffer` to a worker; it comes back in the result. */
  async run(buffer: ArrayBuffer, length: number, previousDigest: Uint8Array | null, compression: CompressionSetting, keys?: BlockKeys): Promise<BlockResult> {
    const previous = previousDigest === null ? null : detached(previousDigest);
    const r = await this.post<BlockResult>((id) => ({ op: 'encode', id, buffer, length, previousDigest: previous, compression, keys }), [buffer]);
    return { ...r, digest: Buffer.from(r.digest) };
  }

  /**
   * Decompress and verify a stored block. Workers get bytes, never file
   * descriptors: the caller reads the stored bytes through its Storage, and
   * they are transferred to the worker (no copy when `stored` spans its own
   * ArrayBuffer, as BackupFileReader's reads do; `stored` is unusable after).
   * With `range.bounds`, `stored` holds just the frames knownFrames() names.
   */
  decode(
    stored: Uint8Array,
    codec: CodecName,
    rawLength: number,
    digest: Uint8Array,
    range?: DecodeRange,
    strict?: boolean,
    keys?: BlockKeys,
  ): Promise<DecodeResult> {
    const bytes = ownArrayBuffer(stored);
    return this.post<DecodeResult>((id) => ({ op: 'decode', id, stored: bytes, codec, rawLength, digest: detached(digest), range, strict, keys }), [bytes]);
  }

  /**
   * The verified copy of a stored block (synthetic full, merge, transform,
   * compact, backup copy): a worker decompresses it and checks the SHA-256 of
   * the plaintext against `digest` (always, even when frames carry their own
   * checksums), and hands the stored bytes back untouched to be written as
   * they are: no recompression. `stored` is transferred (unusable after); use
   * the returned buffer.
   */
  async verifyStored(
    stored: Uint8Array,
    codec: CodecName,
    rawLength: number,
    digest: Uint8Array,
    keys?: BlockKeys,
  ): Promise<{ stored: Buffer; problem: string | null }> {
    const bytes = ownArrayBuffer(stored);
    const r = await this.post<VerifyResult>((id) => ({ op: 'verify', id, stored: bytes, codec, rawLength, digest: detached(digest), keys }), [bytes]);
    return { stored: Buffer.from(r.stored), problem: r.problem };
  }

  async close(): Promise<void> {
    // A worker terminated while it loads its module leaves the module's file open: a pool closed right after it was
    // started (a run that fails at once) would leak a descriptor.
    await Promise.all(this.started);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
