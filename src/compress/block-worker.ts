/**
 * Worker thread of the block pipelines. Two jobs, both CPU-bound:
 *  - encode (backup): hash a block, and compress it unless its digest equals
 *    the one it had at the previous point;
 *  - decode (restore, reads): decompress a stored block and verify it.
 * Buffers are transferred, not copied, in both directions.
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { ZSTD_FRAME_BYTES, compressBlock, decodeZstdFrames, decodeZstdRange, verifyingDecode } from './codec.js';
import { readSync } from 'node:fs';
import type { BlockTask, BlockResult, DecodeTask, DecodeResult, StoredAt } from './block-pool.js';

const port = parentPort;
if (port === null) throw new Error('block-worker must run in a worker thread');

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return (b.byteOffset === 0 && b.buffer.byteLength === b.length ? b.buffer : b.buffer.slice(b.byteOffset, b.byteOffset + b.length)) as ArrayBuffer;
}

function encode(t: BlockTask): void {
  const data = Buffer.from(t.buffer, 0, t.length);
  const digest = createHash('sha256').update(data).digest();
  const unchanged = t.previousDigest !== null && digest.equals(Buffer.from(t.previousDigest));
  if (unchanged) {
    const result: BlockResult = { id: t.id, digest, unchanged: true, codec: 'none', stored: null, buffer: t.buffer };
    port!.postMessage(result, [t.buffer]);
    return;
  }
  const c = compressBlock(t.compression, data);
  // A block stored as it is must be copied before its input buffer goes back to the pool.
  const stored = toArrayBuffer(c.bytes === data ? Buffer.from(data) : c.bytes);
  const result: BlockResult = { id: t.id, digest, unchanged: false, codec: c.codec, stored, buffer: t.buffer };
  port!.postMessage(result, [t.buffer, stored]);
}

/** Reused for blocks the worker reads itself: stored bytes are consumed before the next task. */
let readBuffer = Buffer.allocUnsafeSlow(0);

/** Reads a stored block from an open file into the reused buffer; a problem string if it cannot. */
function readStored(at: StoredAt): Buffer | string {
  if (readBuffer.length < at.length) readBuffer = Buffer.allocUnsafeSlow(Math.max(at.length, 2 * readBuffer.length));
  const into = readBuffer.subarray(0, at.length);
  try {
    let done = 0;
    while (done < at.length) {
      const n = readSync(at.fd, into, done, at.length - done, at.position + done);
      if (n === 0) return `cannot be read (only ${done} of ${at.length} bytes are in the file)`;
      done += n;
    }
  } catch (err) {
    return `cannot be read (${err instanceof Error ? err.message : String(err)})`;
  }
  return into;
}

/** A range of a block whose frame boundaries are known: read and decode just those frames. */
function decodeKnownFrames(t: DecodeTask, at: StoredAt, bounds: Int32Array): void {
  const n = bounds.length - 1;
  const first = Math.min(n - 1, Math.floor(t.range!.from / ZSTD_FRAME_BYTES));
  const last = Math.min(n - 1, Math.floor((t.range!.to - 1) / ZSTD_FRAME_BYTES));
  const span = readStored({ fd: at.fd, position: at.position + bounds[first]!, length: bounds[last + 1]! - bounds[first]! });
  const part = typeof span === 'string' ? { problem: span } : decodeZstdFrames(span, first, last, t.rawLength);
  if ('problem' in part) {
    port!.postMessage({ id: t.id, data: null, problem: part.problem } satisfies DecodeResult);
    return;
  }
  const ab = toArrayBuffer(part.data);
  port!.postMessage({ id: t.id, data: ab, problem: null, start: part.start } satisfies DecodeResult, [ab]);
}

function decode(t: DecodeTask): void {
  if (t.range?.bounds && t.codec === 'zstd' && !(t.stored instanceof ArrayBuffer)) return decodeKnownFrames(t, t.stored, t.range.bounds);
  const stored = t.stored instanceof ArrayBuffer ? Buffer.from(t.stored) : readStored(t.stored);
  if (typeof stored !== 'string' && t.range && t.codec === 'zstd') {
    const part = decodeZstdRange(stored, t.rawLength, t.range.from, t.range.to);
    if (part && 'problem' in part) {
      port!.postMessage({ id: t.id, data: null, problem: part.problem } satisfies DecodeResult);
      return;
    }
    if (part) {
      const ab = toArrayBuffer(part.data);
      port!.postMessage({ id: t.id, data: ab, problem: null, start: part.start, ...(part.bounds ? { bounds: part.bounds } : {}) } satisfies DecodeResult, [ab]);
      return;
    }
  }
  const r = typeof stored === 'string' ? { data: null, problem: stored } : verifyingDecode(t.codec, stored, t.rawLength, t.digest, t.strict === true);
  if (r.data === null) {
    port!.postMessage({ id: t.id, data: null, problem: r.problem } satisfies DecodeResult);
    return;
  }
  // An uncompressed block is the input itself: copy it into a buffer of its own to hand over.
  const own = r.data === stored ? Buffer.allocUnsafeSlow(r.data.length) : r.data;
  if (own !== r.data) r.data.copy(own);
  const ab = toArrayBuffer(own);
  port!.postMessage({ id: t.id, data: ab, problem: null, start: 0 } satisfies DecodeResult, [ab]);
}

port.on('message', (t: BlockTask | DecodeTask) => {
  try {
    if (t.op === 'decode') decode(t);
    else encode(t);
  } catch (err) {
    port.postMessage(
      { id: t.id, error: err instanceof Error ? err.message : String(err), buffer: t.op === 'encode' ? t.buffer : undefined },
      t.op === 'encode' ? [t.buffer] : [],
    );
  }
});
