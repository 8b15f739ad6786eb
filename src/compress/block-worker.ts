/**
 * Worker thread of the block pipelines. Two jobs, both CPU-bound:
 *  - encode (backup): hash a block, and compress it unless its digest equals
 *    the one it had at the previous point;
 *  - decode (restore, reads): decompress a stored block and verify it;
 *  - verify (copies of stored blocks): the same check, the stored bytes handed back as they came.
 * Buffers are transferred, not copied, in both directions. Workers never
 * touch files: the main thread reads stored blocks through the repository's
 * Storage and hands over the bytes.
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { compressBlock, decodeFrames, decodeOpened, decodeRange, openStoredBlock, SEAL_PROBLEM, verifyingDecode } from './codec.js';
import { keyedDigest, sealBytes } from '../crypto/seal.js';
import {
  knownFrames,
  ownArrayBuffer,
  type BlockTask,
  type BlockResult,
  type DecodeTask,
  type DecodeResult,
  type VerifyTask,
  type VerifyResult,
} from './block-pool.js';

const port = parentPort;
if (port === null) throw new Error('block-worker must run in a worker thread');

function encode(t: BlockTask): void {
  const data = Buffer.from(t.buffer, 0, t.length);
  const digest = t.keys ? keyedDigest(t.keys.mac, data) : createHash('sha256').update(data).digest();
  const unchanged = t.previousDigest !== null && digest.equals(Buffer.from(t.previousDigest));
  if (unchanged) {
    const result: BlockResult = { id: t.id, digest, unchanged: true, codec: 'none', stored: null, buffer: t.buffer };
    port!.postMessage(result, [t.buffer]);
    return;
  }
  const c = compressBlock(t.compression, data);
  // A block stored as it is must be copied before its input buffer goes back to the pool (sealing makes new bytes anyway).
  const stored = ownArrayBuffer(t.keys ? sealBytes(t.keys.seal, c.bytes, digest) : c.bytes === data ? Buffer.from(data) : c.bytes);
  const result: BlockResult = { id: t.id, digest, unchanged: false, codec: c.codec, stored, buffer: t.buffer };
  port!.postMessage(result, [t.buffer, stored]);
}

/** A range of a block whose frame boundaries are known: `stored` holds just the frames that cover it. */
function decodeKnownFrames(t: DecodeTask, frames: { first: number; last: number }): void {
  const part = decodeFrames(t.codec, Buffer.from(t.stored), frames.first, frames.last, t.rawLength);
  if ('problem' in part) {
    port!.postMessage({ id: t.id, data: null, problem: part.problem } satisfies DecodeResult);
    return;
  }
  const ab = ownArrayBuffer(part.data);
  port!.postMessage({ id: t.id, data: ab, problem: null, start: part.start } satisfies DecodeResult, [ab]);
}

/** A sealed block: opened whole (tag checked), then decoded as a plain one; no frame bounds go back (it is never read in part). */
function decodeSealed(t: DecodeTask & { keys: NonNullable<DecodeTask['keys']> }): void {
  const plain = openStoredBlock(t.keys, Buffer.from(t.stored), t.digest);
  if (plain === null) {
    port!.postMessage({ id: t.id, data: null, problem: SEAL_PROBLEM } satisfies DecodeResult);
    return;
  }
  if (t.range) {
    const part = decodeRange(t.codec, plain, t.rawLength, t.range.from, t.range.to);
    if (part && 'problem' in part) {
      port!.postMessage({ id: t.id, data: null, problem: part.problem } satisfies DecodeResult);
      return;
    }
    if (part) {
      const ab = ownArrayBuffer(part.data);
      port!.postMessage({ id: t.id, data: ab, problem: null, start: part.start } satisfies DecodeResult, [ab]);
      return;
    }
  }
  const r = decodeOpened(t.codec, plain, t.rawLength, t.digest, t.strict === true, t.keys);
  if (r.data === null) {
    port!.postMessage({ id: t.id, data: null, problem: r.problem } satisfies DecodeResult);
    return;
  }
  const ab = ownArrayBuffer(r.data);
  port!.postMessage({ id: t.id, data: ab, problem: null, start: 0 } satisfies DecodeResult, [ab]);
}

function decode(t: DecodeTask): void {
  if (t.keys) return decodeSealed({ ...t, keys: t.keys });
  const frames = knownFrames(t.codec, t.range);
  if (frames) return decodeKnownFrames(t, frames);
  const stored = Buffer.from(t.stored);
  if (t.range) {
    const part = decodeRange(t.codec, stored, t.rawLength, t.range.from, t.range.to);
    if (part && 'problem' in part) {
      port!.postMessage({ id: t.id, data: null, problem: part.problem } satisfies DecodeResult);
      return;
    }
    if (part) {
      const ab = ownArrayBuffer(part.data);
      port!.postMessage({ id: t.id, data: ab, problem: null, start: part.start, ...(part.bounds ? { bounds: part.bounds } : {}) } satisfies DecodeResult, [ab]);
      return;
    }
  }
  const r = verifyingDecode(t.codec, stored, t.rawLength, t.digest, t.strict === true);
  if (r.data === null) {
    port!.postMessage({ id: t.id, data: null, problem: r.problem } satisfies DecodeResult);
    return;
  }
  // An uncompressed block is the stored bytes themselves: their buffer goes back as it came.
  const ab = ownArrayBuffer(r.data);
  port!.postMessage({ id: t.id, data: ab, problem: null, start: 0 } satisfies DecodeResult, [ab]);
}

function verify(t: VerifyTask): void {
  // What it decodes to is dropped: only the verdict and the stored bytes go back.
  const r = verifyingDecode(t.codec, Buffer.from(t.stored), t.rawLength, t.digest, true, t.keys);
  port!.postMessage({ id: t.id, stored: t.stored, problem: r.problem } satisfies VerifyResult, [t.stored]);
}

port.on('message', (t: BlockTask | DecodeTask | VerifyTask) => {
  try {
    if (t.op === 'decode') decode(t);
    else if (t.op === 'verify') verify(t);
    else encode(t);
  } catch (err) {
    port.postMessage(
      { id: t.id, error: err instanceof Error ? err.message : String(err), buffer: t.op === 'encode' ? t.buffer : undefined },
      t.op === 'encode' ? [t.buffer] : [],
    );
  }
});

// Loaded: the pool may terminate this worker from now on without leaving its module file open.
port.postMessage({ ready: true });
