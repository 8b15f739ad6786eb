import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import type { PinnedBytes } from '../src/core/pinned-bytes.js';
import { BlockCache, SPARES_KEPT } from '../src/repository/block-cache.js';
import { DecodedBlockStore } from '../src/repository/decoded-store.js';
import type { ChainFile } from '../src/repository/job-state.js';
import type { Storage } from '../src/storage/index.js';
import { RestorePointDisk } from '../src/repository/restore-point-disk.js';
import { MiB, joined, latestPointFiles, randomBytes, repoWithPoint, rng, tempDir, until } from './helpers.js';

/** Three-quarters of a 64-byte cache in decoded blocks of 4 bytes (numbered from 1000): blocks from the disk cache go on probation after. */
function threeQuartersFull(d: ReturnType<BlockCache['forDisk']>): void {
  for (let i = 0; i < 12; i++) d.set(1000 + i, Buffer.alloc(4));
}

test('block cache: a lent block is reused only once it is evicted and released; a block given outright never is', () => {
  // Blocks of 4 bytes: probation holds a quarter of 64 (4 blocks), spares a quarter too.
  const cache = new BlockCache(64);
  const d = cache.forDisk();
  const fromDisk = { reloadable: true, reusable: true };
  threeQuartersFull(d);
  const a = d.set(0, Buffer.alloc(4, 0xa0), { ...fromDisk, pins: 1 })!;
  const lent = d.lend(a);
  for (let i = 1; i <= 4; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  assert.equal(d.has(0), false, 'the oldest block on probation made room');
  assert.equal(cache.takeSpare(4), undefined, 'still lent: not a spare');
  assert.ok(lent.data.equals(Buffer.alloc(4, 0xa0)));
  lent.release();
  lent.release();
  const spare = cache.takeSpare(4);
  assert.equal(spare, lent.data, 'released and evicted: the same memory comes back');
  assert.equal(cache.takeSpare(4), undefined, 'released twice, handed out once');
  // Given outright (a plain read's view), a block is never handed out again.
  const given = d.get(1)!;
  for (let i = 5; i <= 8; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  assert.equal(d.has(1), false);
  for (let b = cache.takeSpare(4); b !== undefined; b = cache.takeSpare(4)) assert.notEqual(b, given);
  assert.ok(given.equals(Buffer.alloc(4, 1)));
  // A decoded block (not from the disk cache) is never reused, and keeps its room beside probation.
  d.set(20, Buffer.alloc(8, 0xdd), { reusable: true });
  for (let i = 9; i <= 12; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  assert.equal(d.has(20), true);
  d.clear();
  assert.equal(cache.takeSpare(8), undefined, 'the decoded block was dropped, not kept as a spare');
});

test('block cache: until three-quarters full, blocks from the disk cache skip probation (a scan after does not push them out)', () => {
  const cache = new BlockCache(64);
  const d = cache.forDisk();
  const fromDisk = { reloadable: true, reusable: true };
  for (let i = 0; i < 12; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  // The cache is three-quarters full: a scan of 40 blocks cycles through probation's quarter.
  for (let i = 100; i < 140; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  assert.deepEqual(
    Array.from({ length: 12 }, (_, i) => i).filter((i) => d.has(i)),
    Array.from({ length: 12 }, (_, i) => i),
  );
  assert.equal(cache.usedBytes, 64);
});

test('block cache: a block a client read, loaded again after it left probation, joins the rest of the cache; read-ahead nobody read does not; spares are bounded and the newest kept', () => {
  const cache = new BlockCache(64);
  const d = cache.forDisk();
  const fromDisk = { reloadable: true, reusable: true };
  threeQuartersFull(d);
  // Blocks of 4 bytes: probation holds 4, first in first out.
  for (let i = 0; i < 4; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  d.pin(0)!.release(); // a client read block 0; 1-3 were only read ahead
  d.get(1); // and reads it again: still first in, first out
  for (let i = 4; i < 8; i++) d.set(i, Buffer.alloc(4, i), fromDisk);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => d.has(i)),
    [4, 5, 6, 7],
  );
  // Wanted twice: a hot block stays while a scan cycles through probation.
  d.set(0, Buffer.alloc(4, 0), fromDisk);
  d.set(2, Buffer.alloc(4, 2), fromDisk);
  for (let i = 100; i < 140; i++) {
    d.set(i, Buffer.alloc(4, i), fromDisk);
    d.get(i);
  }
  assert.equal(d.has(0), true, 'the hot block stayed');
  assert.equal(d.has(2), false, 'a block only read ahead before went back on probation, and out with the scan');
  assert.equal(d.has(4), false);
  assert.ok(cache.usedBytes <= 64);
  // A spare of a length nobody asks for does not keep newer ones out.
  cache.giveSpare(Buffer.alloc(3));
  cache.giveSpare(Buffer.alloc(3));
  cache.giveSpare(Buffer.alloc(4, 0x44));
  assert.ok(cache.takeSpare(4)!.equals(Buffer.alloc(4, 0x44)));
  assert.ok(cache.spareBytes <= 64 / 4);
  for (let i = 0; i < SPARES_KEPT + 10; i++) cache.giveSpare(Buffer.alloc(1));
  assert.ok(cache.spareCount <= SPARES_KEPT && cache.spareBytes <= 16);
  const big = new BlockCache(1 << 30);
  for (let i = 0; i < SPARES_KEPT + 10; i++) big.giveSpare(Buffer.alloc(4));
  assert.equal(big.spareCount, SPARES_KEPT);
});

/** A point of `content` whose every block is in a disk cache: what a restarted server finds after a first pass. */
async function warmPoint(dir: string, content: Buffer, pool: BlockWorkerPool): Promise<{ files: ChainFile[]; storage: Storage; store: DecodedBlockStore }> {
  const { files, storage } = await latestPointFiles(await repoWithPoint(dir, content));
  const store = await DecodedBlockStore.open(join(dir, 'decoded'), 64 * MiB);
  // A pass through the cold disk, by plain reads as NFS or a restore makes them, fills the disk cache.
  const cold = await RestorePointDisk.open(files, 0, { storage, pool, cacheBytes: 4 * MiB, decoded: store });
  for (let off = 0; off < content.length; off += 256 * 1024) await cold.read(off, Math.min(256 * 1024, content.length - off));
  // What its writes could not keep at once is written once the reads pause.
  await until('every block in the disk cache', async () => (store.stats().blocks === cold.blockCount ? true : undefined), 30_000);
  await cold.close();
  await store.flushed();
  return { files, storage, store };
}

test(
  'lent reads: a warm pass over a disk larger than the memory cache reuses its buffers, and every read, lent or given, keeps its bytes',
  { timeout: 2 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    try {
      const content = randomBytes(rng(91), 12 * MiB + 4321);
      const { files, storage, store } = await warmPoint(dir, content, pool);
      assert.ok(store.stats().written >= 12);
      assert.ok(store.stats().misses >= 12, `a block not yet in the disk cache is a miss (${store.stats().misses})`);

      const cache = new BlockCache(8 * MiB);
      const disk = await RestorePointDisk.open(files, 0, { storage, pool, cache, decoded: store });
      try {
        const check = (got: Buffer, off: number, what: string): void => assert.ok(got.equals(content.subarray(off, off + got.length)), `${what} at ${off}`);
        const held: { lent: PinnedBytes; off: number }[] = [];
        const given: { data: Buffer; off: number }[] = [];
        for (let pass = 0; pass < 3; pass++) {
          for (let off = 0; off < content.length; off += 128 * 1024) {
            const len = Math.min(128 * 1024, content.length - off);
            const lent = await disk.readPinned(off, len);
            check(joined(lent), off, 'lent');
            // Some are held across the passes (a reply the kernel has not taken), some given outright (NFS, a restore).
            if (off % (3 * MiB) === 0 && pass === 0) held.push({ lent, off });
            else lent.release();
            if (off % (5 * MiB) === 128 * 1024 && pass === 0) given.push({ data: await disk.read(off, len), off });
          }
        }
        assert.ok(cache.reused >= 10, `buffers reused: ${cache.reused}`);
        for (const h of held) check(joined(h.lent), h.off, 'held across passes');
        for (const g of given) check(g.data, g.off, 'given across passes');
        for (const h of held) h.lent.release();
        // Reads spanning blocks are lent too, a view of each block, and come back whole.
        for (const [off, len] of [
          [MiB - 100, 300],
          [5 * MiB - 1, 2],
          [2 * MiB + 7, 2 * MiB],
          [11 * MiB + 7, content.length - 11 * MiB - 7],
        ] as const) {
          const lent = await disk.readPinned(off, len);
          assert.equal(lent.length, len);
          assert.equal(lent.parts.length, Math.floor((off + len - 1) / MiB) - Math.floor(off / MiB) + 1, `one part per block at ${off}`);
          check(joined(lent), off, 'across blocks');
          assert.equal(joined(lent).length, len);
          lent.release();
        }
        await disk.close();

        // Small reads on a restarted server: while the memory cache has room to spare (a quarter free), a block in the
        // disk cache is loaded whole, and its next reads find it in memory; after, a small read reads its piece only.
        const fresh = new BlockCache(8 * MiB);
        const again = await RestorePointDisk.open(files, 0, { storage, pool, cache: fresh, decoded: store });
        try {
          const hits = store.stats().hits;
          // Two rounds, in orders that never read a block twice in a row, nor the block after (that loads it whole).
          for (const [within, order] of [
            [500_000, [7, 2, 10, 0, 5, 11, 3, 8, 1, 9, 4, 6]],
            [100_000, [9, 1, 11, 4, 0, 8, 2, 6, 10, 3, 7, 5]],
          ] as const) {
            for (const bi of order) {
              const off = bi * MiB + within;
              const p = await again.readPinned(off, 4096);
              check(joined(p), off, 'small');
              p.release();
            }
          }
          assert.equal(fresh.blockCount, 6, 'six blocks of 1 MiB leave a quarter of 8 MiB free');
          assert.equal(store.stats().hits - hits, 6 + 6 * 2, 'one whole read for each of the six, a piece for each small read after');
        } finally {
          await again.close();
        }
      } finally {
        await disk.close();
        await store.close();
      }
    } finally {
      await pool.close();
      await cleanup();
    }
  },
);

test(
  'lent reads: two disks on one cache, lent, plain and whole-block reads at once, joining one another’s loads: no bytes ever change under a reader',
  { timeout: 2 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    try {
      const content = randomBytes(rng(7), 16 * MiB + 777);
      const { files, storage, store } = await warmPoint(dir, content, pool);
      const cache = new BlockCache(4 * MiB);
      const disks = [
        await RestorePointDisk.open(files, 0, { storage, pool, cache, decoded: store }),
        await RestorePointDisk.open(files, 0, { storage, pool, cache, decoded: store }),
      ];
      try {
        const rand = rng(3);
        const ri = (n: number): number => Math.floor(rand() * n);
        const bad: string[] = [];
        const check = (buf: Buffer, off: number, what: string): void => {
          if (!buf.equals(content.subarray(off, off + buf.length))) bad.push(`${what} at ${off}+${buf.length}`);
        };
        const given: [Buffer, number][] = [];
        const ops: Promise<void>[] = [];
        for (let k = 0; k < 3000; k++) {
          const d = disks[ri(2)]!;
          const kind = ri(5);
          const off = kind === 4 ? ri(16) * MiB + ri(MiB - 200_000) : ri(content.length - 300_000);
          const len = Math.min(kind === 3 ? 200_000 + ri(100_000) : 1 + ri(MiB / 2), content.length - off);
          ops.push(
            (async () => {
              await new Promise((res) => setImmediate(res));
              if (kind === 0 || kind === 3 || kind === 4) {
                // Lent, held a while (a reply the kernel has not taken yet), then given back.
                const p = await d.readPinned(off, len);
                check(joined(p), off, 'lent');
                await new Promise((res) => setTimeout(res, ri(20)));
                check(joined(p), off, 'lent, before release');
                p.release();
              } else if (kind === 1) {
                const b = await d.read(off, len);
                given.push([b, off]);
                check(b, off, 'given');
              } else {
                const bi = ri(16);
                const b = await d.readBlock(bi);
                given.push([b, bi * MiB]);
                check(b, bi * MiB, 'block');
              }
            })(),
          );
          if (k % 50 === 0) await new Promise((res) => setTimeout(res, 1));
        }
        await Promise.all(ops);
        for (const [b, off] of given) check(b, off, 'given, at the end');
        assert.deepEqual(bad.slice(0, 5), []);
        assert.ok(cache.reused > 0, 'buffers were reused meanwhile');
      } finally {
        for (const d of disks) await d.close();
        await store.close();
      }
    } finally {
      await pool.close();
      await cleanup();
    }
  },
);
