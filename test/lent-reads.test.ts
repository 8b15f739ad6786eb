import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import type { PinnedBytes } from '../src/core/pinned-bytes.js';
import { BlockCache, SPARES_KEPT } from '../src/repository/block-cache.js';
import { DecodedBlockStore } from '../src/repository/decoded-store.js';
import { filesForPoint } from '../src/repository/job-state.js';
import { RestorePointDisk } from '../src/repository/restore-point-disk.js';
import { MiB, randomBytes, repoWithPoint, rng, serviceAt, tempDir } from './helpers.js';

test('block cache: a lent block is reused only once it is evicted and released; a block given outright never is', () => {
  const cache = new BlockCache(16);
  const d = cache.forDisk();
  // Reloadable blocks (the disk cache has them) may take a quarter of the budget: one block of 4 bytes.
  const a = d.set(0, Buffer.alloc(4, 0xaa), { reloadable: true, reusable: true, pins: 1 })!;
  const lent = d.lend(a);
  d.set(1, Buffer.alloc(4, 0xbb), { reloadable: true, reusable: true });
  assert.equal(d.has(0), false, 'the older reloadable block made room');
  assert.equal(cache.takeSpare(4), undefined, 'still lent: not a spare');
  assert.ok(lent.data.equals(Buffer.alloc(4, 0xaa)));
  lent.release();
  lent.release();
  const spare = cache.takeSpare(4);
  assert.equal(spare, lent.data, 'released and evicted: the same memory comes back');
  assert.equal(cache.takeSpare(4), undefined, 'released twice, handed out once');
  // Given outright (a plain read's view), a block is never handed out again.
  const given = d.get(1)!;
  d.set(2, Buffer.alloc(4, 0xcc), { reloadable: true, reusable: true });
  assert.equal(d.has(1), false);
  assert.equal(cache.takeSpare(4), undefined);
  assert.ok(given.equals(Buffer.alloc(4, 0xbb)));
  // A decoded block (not in the disk cache) is never reused, and keeps its room beside the reloadable share.
  d.set(3, Buffer.alloc(8, 0xdd), { reusable: true });
  d.set(4, Buffer.alloc(4, 0xee), { reloadable: true, reusable: true });
  assert.equal(d.has(3), true);
  assert.equal(d.has(2), false);
  assert.ok(cache.takeSpare(4)!.equals(Buffer.alloc(4, 0xcc)), 'the unlent reloadable block evicted went to the spares');
  d.clear();
  assert.equal(cache.takeSpare(8), undefined, 'the decoded block was dropped, not kept as a spare');
  // Spares are bounded.
  for (let i = 0; i < SPARES_KEPT + 10; i++) cache.giveSpare(Buffer.alloc(4));
  assert.equal(cache.spareCount, SPARES_KEPT);
});

test(
  'lent reads: a warm pass over a disk larger than the memory cache reuses its buffers, and every read, lent or given, keeps its bytes',
  { timeout: 2 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    try {
      const content = randomBytes(rng(91), 12 * MiB + 4321);
      const repo = await repoWithPoint(dir, content);
      const { state, repo: r } = await serviceAt('2026-01-01T00:00:00Z').jobState(repo, 'vm');
      const files = filesForPoint(state, state.points[state.points.length - 1]!.id)!;
      const store = await DecodedBlockStore.open(join(dir, 'decoded'), 64 * MiB);
      // A pass through a cold disk fills the disk cache.
      const cold = await RestorePointDisk.open(files, 0, { storage: r.storage, pool, cacheBytes: 4 * MiB, decoded: store });
      for (let off = 0; off < content.length; off += 256 * 1024) await cold.read(off, Math.min(256 * 1024, content.length - off));
      await cold.close();
      await store.flushed();
      assert.ok(store.stats().written >= 12);

      const cache = new BlockCache(8 * MiB);
      const disk = await RestorePointDisk.open(files, 0, { storage: r.storage, pool, cache, decoded: store });
      try {
        const check = (got: Buffer, off: number, what: string): void => assert.ok(got.equals(content.subarray(off, off + got.length)), `${what} at ${off}`);
        const held: { lent: PinnedBytes; off: number }[] = [];
        const given: { data: Buffer; off: number }[] = [];
        for (let pass = 0; pass < 3; pass++) {
          for (let off = 0; off < content.length; off += 128 * 1024) {
            const len = Math.min(128 * 1024, content.length - off);
            const lent = await disk.readPinned(off, len);
            check(lent.data, off, 'lent');
            // Some are held across the passes (a reply the kernel has not taken), some given outright (NFS, a restore).
            if (off % (3 * MiB) === 0 && pass === 0) held.push({ lent, off });
            else lent.release();
            if (off % (5 * MiB) === 128 * 1024 && pass === 0) given.push({ data: await disk.read(off, len), off });
          }
        }
        assert.ok(cache.reused > 20, `buffers reused: ${cache.reused}`);
        assert.ok(cache.usedBytes <= 8 * MiB);
        for (const h of held) check(h.lent.data, h.off, 'held across passes');
        for (const g of given) check(g.data, g.off, 'given across passes');
        for (const h of held) h.lent.release();
        // Reads spanning two blocks come back whole as well.
        for (const off of [MiB - 100, 5 * MiB - 1, 11 * MiB + 7]) {
          const lent = await disk.readPinned(off, 300);
          check(lent.data, off, 'across blocks');
          lent.release();
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
