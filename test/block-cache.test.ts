import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository } from '../src/repository/index.js';
import { BlockCache } from '../src/repository/block-cache.js';
import { countDecodes } from './decode-counter.js';
import { MiB, cli, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';

test('block cache: one budget across disks, least recently used out first, never over budget', () => {
  const cache = new BlockCache(10);
  const a = cache.forDisk();
  const b = cache.forDisk();
  a.set(0, Buffer.alloc(4, 1));
  b.set(0, Buffer.alloc(4, 2));
  assert.equal(cache.usedBytes, 8);
  assert.ok(a.get(0)!.equals(Buffer.alloc(4, 1)), 'a touched: b:0 is now the oldest');
  b.set(1, Buffer.alloc(4, 3));
  assert.equal(cache.usedBytes, 8);
  assert.equal(b.has(0), false, "another disk's older block went first");
  assert.equal(a.has(0), true);
  assert.equal(b.has(1), true);
  b.set(2, Buffer.alloc(11));
  assert.equal(b.has(2), false, 'a block larger than the whole budget is not kept');
  assert.equal(cache.usedBytes, 8);
  b.set(1, Buffer.alloc(6, 4));
  assert.equal(cache.usedBytes, 10, 'a block set again replaces the old copy');
  a.clear();
  assert.equal(cache.usedBytes, 6);
  assert.equal(cache.blockCount, 1);
  assert.ok(cache.peakBytes <= 10);
  assert.equal(new BlockCache(0).forDisk().enabled, false);
  assert.throws(() => new BlockCache(-1), RangeError);
});

test('block cache: a block a reader holds stays intact after it is evicted', () => {
  const cache = new BlockCache(8);
  const d = cache.forDisk();
  d.set(0, Buffer.alloc(8, 0x11));
  const view = d.get(0)!.subarray(2, 6);
  for (let i = 1; i < 50; i++) d.set(i, Buffer.alloc(8, i));
  assert.equal(d.has(0), false);
  assert.ok(view.equals(Buffer.alloc(4, 0x11)));
});

test('instant recovery: the sessions of a server share one cache budget; reads stay exact', { timeout: 180_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const budget = 4 * MiB;
  const diskBytes = 8 * MiB;
  const sessions = 8;
  let opened: InstantRecovery | undefined;
  // Counts block decodes: a block the cache still holds is not decoded again.
  const decodes = countDecodes();
  try {
    const content = randomBytes(rng(14), diskBytes);
    const repo = await repoWithPoint(dir, content, 'j');
    const ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { cacheBudgetBytes: budget, diskCacheBudgetBytes: 0 });
    opened = ir;
    for (let s = 0; s < sessions; s++) await ir.start('j', 'latest', { name: `s${s}` });
    const readAll = async (): Promise<void> => {
      for (let s = 0; s < sessions; s++) {
        const ov = ir.session(`s${s}`).overlays[0]!;
        for (let at = 0; at < diskBytes; at += MiB) assert.ok((await ov.read(at, MiB)).equals(content.subarray(at, at + MiB)), `s${s} at ${at}`);
      }
    };
    await readAll();
    decodes.count = 0;
    await readAll();
    // Per-disk caches would hold all 64 blocks and decode none of them again.
    const blocks = (sessions * diskBytes) / MiB;
    assert.ok(decodes.count >= blocks - budget / MiB, `second pass over ${blocks} blocks decoded ${decodes.count}: the cache held more than its budget`);
    const rand = rng(15);
    for (let i = 0; i < 200; i++) {
      const ov = ir.session(`s${Math.floor(rand() * sessions)}`).overlays[0]!;
      const at = Math.floor(rand() * (diskBytes / 65536)) * 65536;
      assert.ok((await ov.read(at, 65536)).equals(content.subarray(at, at + 65536)));
    }
    assert.equal(ir.blockCache.budgetBytes, budget);
    assert.ok(ir.blockCache.peakBytes <= budget, `peak ${ir.blockCache.peakBytes}`);
    assert.ok(ir.blockCache.usedBytes > 0, 'blocks are cached');
    const held = ir.blockCache.usedBytes;
    await ir.stop('s0');
    await ir.stop('s1');
    assert.ok(ir.blockCache.usedBytes <= held, 'stopped sessions give their blocks back');
  } finally {
    decodes.restore();
    await opened?.close();
    await cleanup();
  }
});

test('serve --cache-budget: a size it cannot read is refused before anything listens', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    const r = await cli(['serve', '--repo', repo, '--nfs-port', '0', '--mount-port', '0', '--nbd-port', '0', '--no-portmap', '--cache-budget', 'lots']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /LFB_ERR_INVALID_ARGUMENT/);
    assert.match(r.stderr, /--cache-budget/);
  } finally {
    await cleanup();
  }
});
