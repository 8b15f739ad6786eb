/**
 * Worker thread of the block pipeline: hashes a block, and compresses it
 * unless its digest equals the one it had at the previous point. Buffers are
 * transferred, not copied, in both directions.
 */
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { compressBlock } from './codec.js';
import type { BlockTask, BlockResult } from './block-pool.js';

const port = parentPort;
if (port === null) throw new Error('block-worker must run in a worker thread');

port.on('message', (t: BlockTask) => {
  try {
    const data = Buffer.from(t.buffer, 0, t.length);
    const digest = createHash('sha256').update(data).digest();
    const unchanged = t.previousDigest !== null && digest.equals(Buffer.from(t.previousDigest));
    let result: BlockResult;
    if (unchanged) {
      result = { id: t.id, digest, unchanged: true, codec: 'none', stored: null, buffer: t.buffer };
      port.postMessage(result, [t.buffer]);
    } else {
      const c = compressBlock(t.compression, data);
      // A stored block that is the input itself must be copied before the input buffer goes back to the pool.
      const stored = c.bytes === data ? Buffer.from(data) : c.bytes;
      const ab = stored.buffer.byteLength === stored.length && stored.byteOffset === 0 ? stored.buffer : stored.buffer.slice(stored.byteOffset, stored.byteOffset + stored.length);
      result = { id: t.id, digest, unchanged: false, codec: c.codec, stored: ab as ArrayBuffer, buffer: t.buffer };
      port.postMessage(result, [t.buffer, ab as ArrayBuffer]);
    }
  } catch (err) {
    port.postMessage({ id: t.id, error: err instanceof Error ? err.message : String(err), buffer: t.buffer }, [t.buffer]);
  }
});
