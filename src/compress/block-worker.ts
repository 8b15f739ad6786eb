/**
 * Worker thread of the block pipelines. Two jobs, both CPU-bound:
 *  - encode (backup): hash a block, and compress it unless its digest equals
 *    the one it had at the previous point;
 *  - decode (restore, reads): decompress a stored block and check its digest.
 * Buffers are transferred, not copied, in both directions.
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { compressBlock, decompressBlock } from './codec.js';
import type { BlockTask, BlockResult, DecodeTask, DecodeResult } from './block-pool.js';

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

function decode(t: DecodeTask): void {
  const stored = Buffer.from(t.stored);
  let data: Buffer;
  try {
    data = decompressBlock(t.codec, stored, t.rawLength);
  } catch (err) {
    const r: DecodeResult = { id: t.id, data: null, problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
    port!.postMessage(r);
    return;
  }
  if (!createHash('sha256').update(data).digest().equals(Buffer.from(t.digest))) {
    port!.postMessage({ id: t.id, data: null, problem: 'fails its checksum' } satisfies DecodeResult);
    return;
  }
  const ab = toArrayBuffer(data === stored ? Buffer.from(data) : data);
  port!.postMessage({ id: t.id, data: ab, problem: null } satisfies DecodeResult, [ab]);
}

port.on('message', (t: BlockTask | DecodeTask) => {
  try {
    if (t.op === 'decode') decode(t);
    else encode(t);
  } catch (err) {
    port.postMessage({ id: t.id, error: err instanceof Error ? err.message : String(err), buffer: t.op === 'encode' ? t.buffer : undefined }, t.op === 'encode' ? [t.buffer] : []);
  }
});
