// The block worker pool gives each task to the worker with the fewest tasks waiting: a slow block on one worker
// does not hold up the blocks that come after it while the other worker is idle. No root, QEMU or ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockWorkerPool } from '../src/compress/index.js';
import { ownArrayBuffer } from '../src/compress/block-pool.js';
import { randomBytes, rng } from './helpers.js';

test('a task goes to the idle worker, not in turn behind a slow one', async () => {
  const pool = new BlockWorkerPool(2);
  try {
    const rand = rng(3);
    // Slow: 4 MiB of text-like bytes at zstd level 19 (about a second). Quick: 64 KiB at level 1 (a millisecond).
    const words = Array.from({ length: 4096 }, () => randomBytes(rand, 1 + Math.floor(rand() * 12)).toString('hex'));
    const slowBytes = Buffer.alloc(4 << 20);
    for (let at = 0; at < slowBytes.length;) at += slowBytes.write(`${words[Math.floor(rand() * words.length)]!} `, at);
    const quick = (): Promise<number> => {
      const b = randomBytes(rand, 64 << 10);
      return pool.run(ownArrayBuffer(b), b.length, null, { codec: 'zstd', level: 1 }, undefined).then(() => performance.now());
    };
    const slow = pool.run(ownArrayBuffer(slowBytes), slowBytes.length, null, { codec: 'zstd', level: 19 }, undefined).then(() => performance.now());
    // The first quick task goes to the other worker; once it is answered that worker is idle, and the next quick
    // task must go there too (taking turns would queue it behind the slow one).
    await quick();
    const second = quick();
    const [slowAt, secondAt] = await Promise.all([slow, second]);
    assert.ok(secondAt < slowAt, `the second quick task ended ${(secondAt - slowAt).toFixed(0)} ms after the slow one: it waited behind it`);
  } finally {
    await pool.close();
  }
});
