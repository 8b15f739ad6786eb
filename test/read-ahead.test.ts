import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { MAX_STREAMS, ReadAheadStreams } from '../src/repository/read-ahead.js';
import { countDecodes } from './decode-counter.js';
import { MiB, randomBytes, repoWithPoint, rng, serviceAt, tempDir, until } from './helpers.js';

const KiB = 1024;

/** Reads `count` pieces of `size` from `offset` on, one after another, as one client would; notes what was asked ahead (and the depth then). */
function readOn(
  s: ReadAheadStreams,
  offset: number,
  size: number,
  count: number,
  caughtUp = false,
): { sequential: boolean[]; ahead: [number, number][]; depths: number[] } {
  const sequential: boolean[] = [];
  const ahead: [number, number][] = [];
  const depths: number[] = [];
  for (let i = 0; i < count; i++) {
    const end = offset + (i + 1) * size;
    const r = s.note(offset + i * size, end, caughtUp);
    sequential.push(r.sequential);
    if (r.ahead === undefined) continue;
    ahead.push([r.ahead.from, r.ahead.to]);
    depths.push(r.ahead.to - Math.floor((end - 1) / MiB) - 1);
  }
  return { sequential, ahead, depths };
}

test('read-ahead: a stream is sequential from its second read, and asks again at the middle of its window', () => {
  const s = new ReadAheadStreams(4, 16, MiB, 1000);
  const r = readOn(s, 0, 256 * KiB, 12);
  assert.deepEqual(r.sequential, [false, ...Array<boolean>(11).fill(true)]);
  // Second read (block 0): blocks 1..4. Block 2's first read (the window's middle): up to 2 + 1 + 4.
  assert.deepEqual(r.ahead, [
    [1, 5],
    [5, 7],
  ]);
});

test('read-ahead: a reader that catches up gets a deeper window, up to the most; one that does not keeps the first depth', () => {
  const fast = new ReadAheadStreams(4, 16, MiB, 1000);
  const r = readOn(fast, 0, MiB, 40, true);
  assert.deepEqual(r.depths.slice(0, 3), [8, 16, 16], `windows ${JSON.stringify(r.ahead)}`);
  assert.equal(Math.max(...r.depths), 16);
  assert.ok(
    r.ahead.every(([from], i) => i === 0 || from === r.ahead[i - 1]![1]),
    'no block is asked for twice',
  );
  const slow = new ReadAheadStreams(4, 16, MiB, 1000);
  const q = readOn(slow, 0, MiB, 40, false);
  assert.ok(q.depths.length > 10 && q.depths.every((d) => d === 4), `a reader that never waits keeps 4 ahead: ${JSON.stringify(q.depths)}`);
  // Within one block, being caught up counts once: three blocks read in 64 KiB pieces deepen the window twice.
  const within = new ReadAheadStreams(2, 64, MiB, 1000);
  assert.equal(Math.max(...readOn(within, 0, 64 * KiB, 16 * 3, true).depths), 8);
});

test('read-ahead: two readers interleaved are each sequential; random reads are not, and do not push their streams out', () => {
  const blocks = 10 * 1024 * 1024; // a 10 TiB disk: random reads land near a stream's end about once in 40,000
  const s = new ReadAheadStreams(4, 16, MiB, blocks);
  const a: boolean[] = [];
  const b: boolean[] = [];
  const step = 128 * KiB;
  for (let i = 0; i < 20; i++) {
    a.push(s.note(i * step, (i + 1) * step).sequential);
    b.push(s.note(5000 * MiB + i * step, 5000 * MiB + (i + 1) * step).sequential);
  }
  assert.deepEqual(a.slice(1), Array<boolean>(19).fill(true));
  assert.deepEqual(b.slice(1), Array<boolean>(19).fill(true));
  const rand = rng(7);
  let falses = 0;
  for (let i = 0; i < 5000; i++) {
    const off = Math.floor(rand() * (blocks - 1) * MiB);
    if (s.note(off, off + 4 * KiB).sequential) falses += 1;
  }
  assert.equal(falses, 0);
  assert.equal(s.size, MAX_STREAMS, 'the streams held are bounded');
  assert.ok(s.note(20 * step, 21 * step).sequential && s.note(5000 * MiB + 20 * step, 5000 * MiB + 21 * step).sequential, 'both readers kept their streams');
  // Requests that arrive a little out of order, or skip what the overlay holds, stay in their stream.
  const c = new ReadAheadStreams(4, 16, MiB, 1000);
  const order = [0, 2, 1, 3, 5, 4, 8, 9];
  const seq = order.map((k) => c.note(k * 64 * KiB, (k + 1) * 64 * KiB).sequential);
  assert.deepEqual(seq, [false, true, true, true, true, true, true, true]);
  // The end of the disk bounds the window.
  const end = new ReadAheadStreams(4, 16, MiB, 3);
  assert.deepEqual(readOn(end, 0, MiB, 3).ahead, [[2, 3]]);
});

test('read-ahead: a read in or after the block the previous read ended in decodes whole blocks, as does any read of a stream', () => {
  const s = new ReadAheadStreams(4, 16, MiB, 1000);
  assert.equal(s.note(3 * MiB + 512 * KiB, 3 * MiB + 516 * KiB).wholeBlocks, false, 'a first read at random: its frames only');
  const again = s.note(3 * MiB + 100, 3 * MiB + 4196);
  assert.ok(again.wholeBlocks && !again.sequential, 'the same block again, far from the stream: whole, without read-ahead');
  assert.equal(s.note(700 * MiB, 700 * MiB + 4096).wholeBlocks, false);
});

test('read-ahead: the deepest window fits a quarter of the memory cache over all streams', () => {
  assert.equal(ReadAheadStreams.forCache(4, 512 * MiB, MiB, 100).maxDepth, 16);
  assert.equal(ReadAheadStreams.forCache(4, 64 * MiB, MiB, 100).maxDepth, 4, 'never under the first depth');
  assert.equal(ReadAheadStreams.forCache(4, 64 * 1024 * MiB, MiB, 100).maxDepth, 32, 'nor over the most');
  // A small cache: the first window and the block being read fit in its quarter (blocks read from the disk cache), one block at least.
  const small = ReadAheadStreams.forCache(8, 16 * MiB, MiB, 100);
  assert.deepEqual([small.minDepth, small.maxDepth], [3, 3]);
  assert.equal(ReadAheadStreams.forCache(8, 2 * MiB, MiB, 100).minDepth, 1);
});

test(
  'read-ahead: two clients reading one point sequentially at once both find their next blocks decoding, and read the exact bytes',
  { timeout: 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    try {
      const content = randomBytes(rng(12), 24 * MiB);
      const repo = await repoWithPoint(dir, content);
      const opened = await serviceAt('2026-01-01T00:00:00Z').openPointDisk(repo, 'vm', 'latest', '0', pool);
      const decodes = countDecodes();
      try {
        // Client A reads blocks 0 and 1, client B blocks 12 and 13, in 256 KiB reads taking turns.
        const step = 256 * KiB;
        for (let i = 0; i < 8; i++) {
          for (const base of [0, 12 * MiB]) {
            const at = base + i * step;
            assert.ok((await opened.disk.read(at, step)).equals(content.subarray(at, at + step)), `read at ${at}`);
          }
        }
        // Blocks 0, 1, 12 and 13 read; each client's second read asked for the four blocks after its own (1..4, 13..16).
        // Taken for one random reader, as before, the two decoded only the four they read.
        await until('both clients to have blocks decoded ahead', () => Promise.resolve(decodes.count >= 10 ? true : undefined), 10_000);
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(decodes.count, 10, 'four blocks ahead of each client, no more');
        for (const at of [2 * MiB, 14 * MiB, 5 * MiB + 3]) assert.ok((await opened.disk.read(at, 64 * KiB)).equals(content.subarray(at, at + 64 * KiB)));
      } finally {
        decodes.restore();
        await opened.disk.close();
      }
    } finally {
      await pool.close();
      await cleanup();
    }
  },
);

test('read-ahead: small reads again and again in one block of a point decode it whole once, not their frames each time', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const pool = new BlockWorkerPool(2);
  try {
    // Compressible, so its blocks are stored in frames (a small random read can decode only its own).
    const rand = rng(13);
    const content = Buffer.alloc(16 * MiB);
    for (let at = 0; at < content.length; at += 4 * KiB) randomBytes(rand, 2 * KiB).copy(content, at);
    const repo = await repoWithPoint(dir, content);
    const opened = await serviceAt('2026-01-01T00:00:00Z').openPointDisk(repo, 'vm', 'latest', '0', pool);
    try {
      for (const pattern of ['same', 'scattered'] as const) {
        const block = pattern === 'same' ? 3 : 9;
        const decodes = countDecodes();
        try {
          for (let k = 0; k < 50; k++) {
            const at = block * MiB + (pattern === 'same' ? 8192 : Math.floor(rand() * (MiB - 4 * KiB)));
            assert.ok((await opened.disk.read(at, 4 * KiB)).equals(content.subarray(at, at + 4 * KiB)), `${pattern} read at ${at}`);
          }
          await new Promise((r) => setTimeout(r, 300));
          // Its frames once, then the whole block (kept), and at most one window of read-ahead.
          assert.ok(decodes.count <= 2 + 4, `${pattern}: ${decodes.count} decodes for 50 reads of one block`);
        } finally {
          decodes.restore();
        }
      }
    } finally {
      await opened.disk.close();
    }
  } finally {
    await pool.close();
    await cleanup();
  }
});
