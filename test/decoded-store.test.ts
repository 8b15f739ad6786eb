import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { BlockTable } from '../src/format/index.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository } from '../src/repository/index.js';
import { DecodedBlockStore, PIECE_BYTES } from '../src/repository/decoded-store.js';
import { RestorePointDisk } from '../src/repository/restore-point-disk.js';
import { countDecodes } from './decode-counter.js';
import { MiB, cli, latestPointFiles, randomBytes, repoWithPoint, rng, tempDir, until } from './helpers.js';

const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** Every cache file under `dir` with its size. */
async function files(dir: string): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  for (const sub of await readdir(dir, { withFileTypes: true })) {
    if (!sub.isDirectory()) continue;
    for (const n of await readdir(join(dir, sub.name))) out.push({ path: join(dir, sub.name, n), size: (await stat(join(dir, sub.name, n))).size });
  }
  return out;
}

async function settle(store: DecodedBlockStore): Promise<void> {
  // close() waits for the writes under way; a store reopened on the same folder sees them.
  await store.close();
}

test('disk cache: blocks come back exact, whole and in ranges, and after a reopen', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(31);
    const blocks = [randomBytes(rand, MiB), randomBytes(rand, 3 * PIECE_BYTES + 123), randomBytes(rand, 100)];
    let store = await DecodedBlockStore.open(dir, 16 * MiB);
    for (const b of blocks) store.put(sha(b), b);
    store.put(sha(blocks[0]!), blocks[0]!);
    await settle(store);
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    assert.equal(store.stats().blocks, 3, 'the files of the last run are taken back');
    for (const b of blocks) {
      assert.ok(store.has(sha(b), b.length));
      assert.ok((await store.readBlock(sha(b), b.length))!.equals(b));
      for (const [from, to] of [
        [0, 1],
        [b.length - 1, b.length],
        [PIECE_BYTES - 10, PIECE_BYTES + 10],
        [5, b.length],
      ] as const) {
        if (from < 0 || to > b.length || from >= to) continue;
        assert.ok((await store.readRange(sha(b), b.length, from, to))!.equals(b.subarray(from, to)), `${b.length}: ${from}..${to}`);
      }
    }
    assert.equal(await store.readBlock(sha(Buffer.from('not kept')), 8), undefined);
    assert.equal(await store.readBlock(sha(blocks[2]!), 99), undefined, 'the length is part of the key');
    const s = store.stats();
    assert.equal(s.damaged, 0);
    assert.equal(s.misses, 2);
    assert.ok(s.hits >= 3 + 10, `hits ${s.hits}`);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('disk cache: a whole-block read asks for its buffer only once the block is found (a spare of the memory cache is not taken for a miss)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    let store = await DecodedBlockStore.open(dir, 16 * MiB);
    const block = randomBytes(rng(33), 64 * 1024);
    let asked = 0;
    const buffer = (): Buffer => {
      asked += 1;
      return Buffer.alloc(block.length);
    };
    assert.equal(await store.readBlockInto(sha(block), block.length, buffer), undefined);
    assert.equal(asked, 0);
    assert.equal(store.stats().misses, 1);
    store.put(sha(block), block);
    await settle(store);
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    assert.ok((await store.readBlockInto(sha(block), block.length, buffer))!.equals(block));
    assert.equal(asked, 1);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('disk cache: a damaged or torn file is found, removed and not served', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(32);
    const blocks = Array.from({ length: 5 }, () => randomBytes(rand, 256 * 1024));
    // All five written at once: more than the default's pending writes.
    let store = await DecodedBlockStore.open(dir, 16 * MiB, { maxPendingWrites: 16 });
    for (const b of blocks) store.put(sha(b), b);
    await settle(store);
    const path = (b: Buffer): string => join(dir, sha(b).toString('hex').slice(0, 2), `${sha(b).toString('hex')}-${b.length}`);
    // 0: one data byte flipped; 1: the header; 2: cut short; 3: emptied; 4: left alone.
    const f0 = await readFile(path(blocks[0]!));
    f0[f0.length - 1000]! ^= 1;
    await writeFile(path(blocks[0]!), f0);
    const f1 = await readFile(path(blocks[1]!));
    f1[9]! ^= 0x80;
    await writeFile(path(blocks[1]!), f1);
    await writeFile(path(blocks[2]!), (await readFile(path(blocks[2]!))).subarray(0, 4096 + 1000));
    await writeFile(path(blocks[3]!), Buffer.alloc(0));
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    assert.equal(await store.readBlock(sha(blocks[0]!), blocks[0]!.length), undefined);
    assert.equal(await store.readRange(sha(blocks[1]!), blocks[1]!.length, 0, 10), undefined);
    assert.equal(await store.readRange(sha(blocks[2]!), blocks[2]!.length, 200_000, 200_010), undefined);
    assert.equal(await store.readBlock(sha(blocks[3]!), blocks[3]!.length), undefined);
    assert.ok((await store.readBlock(sha(blocks[4]!), blocks[4]!.length))!.equals(blocks[4]!));
    assert.equal(store.stats().damaged, 4);
    assert.equal(store.stats().blocks, 1, 'the damaged files are forgotten');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await files(dir)).length, 1, 'and removed');
    // A damaged block can be kept again.
    store.put(sha(blocks[0]!), blocks[0]!);
    await settle(store);
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    assert.ok((await store.readBlock(sha(blocks[0]!), blocks[0]!.length))!.equals(blocks[0]!));
    // Whole-block reads find a damaged header and a file cut short too, also once the header's checksums are known.
    for (const b of [blocks[1]!, blocks[2]!]) store.put(sha(b), b);
    await settle(store);
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    const f1again = await readFile(path(blocks[1]!));
    f1again[13]! ^= 0x01;
    await writeFile(path(blocks[1]!), f1again);
    assert.equal(await store.readBlock(sha(blocks[1]!), blocks[1]!.length), undefined, 'header checksum');
    assert.ok((await store.readBlock(sha(blocks[2]!), blocks[2]!.length))!.equals(blocks[2]!));
    await store.close();
    store = await DecodedBlockStore.open(dir, 16 * MiB);
    assert.ok((await store.readBlock(sha(blocks[2]!), blocks[2]!.length))!.equals(blocks[2]!), 'read once: its checksums are known');
    await writeFile(path(blocks[2]!), (await readFile(path(blocks[2]!))).subarray(0, 4096 + 100_000));
    assert.equal(await store.readBlock(sha(blocks[2]!), blocks[2]!.length), undefined, 'cut short after its header was read');
    assert.equal(store.stats().damaged, 1);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('disk cache: never over its budget, least recently used out first, and a smaller budget trims at open', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(33);
    const budget = 4 * MiB;
    const blocks = Array.from({ length: 12 }, () => randomBytes(rand, 512 * 1024));
    let store = await DecodedBlockStore.open(dir, budget);
    for (let i = 0; i < blocks.length; i++) {
      store.put(sha(blocks[i]!), blocks[i]!);
      await store.flushed();
      // Block 0 is read after every write: it stays the most recently used.
      if (i > 0) assert.ok(await store.readBlock(sha(blocks[0]!), blocks[0]!.length), `block 0 after ${i} writes`);
      const onDisk = (await files(dir)).reduce((n, f) => n + f.size, 0);
      assert.ok(onDisk <= budget, `${onDisk} bytes on disk, budget ${budget}`);
      assert.ok(store.stats().usedBytes <= budget);
    }
    assert.equal(store.stats().blocks, 7, 'seven blocks of 512 KiB and their 4 KiB headers fit in 4 MiB');
    assert.ok(store.has(sha(blocks[11]!), blocks[11]!.length));
    assert.equal(store.has(sha(blocks[1]!), blocks[1]!.length), false);
    assert.ok(store.has(sha(blocks[0]!), blocks[0]!.length));
    await store.close();
    await writeFile(join(dir, 'tmp-0123456789abcdef'), 'what a killed write left');
    store = await DecodedBlockStore.open(dir, MiB);
    assert.equal(store.stats().blocks, 1);
    assert.ok((await files(dir)).reduce((n, f) => n + f.size, 0) <= MiB);
    assert.equal(
      (await readdir(dir)).some((n) => n.startsWith('tmp-')),
      false,
      'a leftover temporary file is removed',
    );
    await store.close();
    store = await DecodedBlockStore.open(dir, 0);
    store.put(sha(blocks[0]!), blocks[0]!);
    await store.close();
    assert.equal(store.stats().blocks, 0, 'a budget of 0 keeps nothing');
  } finally {
    await cleanup();
  }
});

test(
  'instant recovery: a restarted server reads what it decoded before from the disk cache, exact, even where the cache is damaged',
  { timeout: 120_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const diskBytes = 8 * MiB;
    const decodes = countDecodes();
    let ir: InstantRecovery | undefined;
    const open = async (): Promise<InstantRecovery> => {
      ir = new InstantRecovery(await Repository.open(join(dir, 'repo')), systemClock, createLogger('error'), { cacheBudgetBytes: 16 * MiB });
      await ir.loadSessions();
      return ir;
    };
    try {
      const content = randomBytes(rng(34), diskBytes);
      const repo = await repoWithPoint(dir, content, 'j');
      await open();
      await ir!.start('j', 'latest', { name: 's' });
      const ov = (): ReturnType<InstantRecovery['session']>['overlays'][number] => ir!.session('s').overlays[0]!;
      // First the guest's small reads (4 KiB at random in blocks 0-3), then a sequential pass over blocks 4-7.
      const rand = rng(35);
      const small = Array.from({ length: 64 }, () => Math.floor(rand() * ((4 * MiB) / 4096)) * 4096);
      for (const at of small) assert.ok((await ov().read(at, 4096)).equals(content.subarray(at, at + 4096)));
      for (let at = 4 * MiB; at < diskBytes; at += MiB) assert.ok((await ov().read(at, MiB)).equals(content.subarray(at, at + MiB)));
      const first = ir!.cacheStats();
      assert.ok(first.memory.misses > 0);
      // Blocks read in part are decoded whole, and blocks dropped while writes were pending written, in the background.
      await until('eight blocks in the disk cache', async () => (ir!.cacheStats().disk?.blocks === 8 ? true : undefined), 30_000);
      await ir!.close();
      const kept = await files(join(repo, 'cache', 'blocks'));
      assert.equal(kept.length, 8, 'the blocks read in part were decoded whole in the background and kept too');

      decodes.count = 0;
      await open();
      for (const at of small) assert.ok((await ov().read(at, 4096)).equals(content.subarray(at, at + 4096)));
      for (let at = 0; at < diskBytes; at += MiB) assert.ok((await ov().read(at, MiB)).equals(content.subarray(at, at + MiB)));
      assert.equal(decodes.count, 0, 'after the restart nothing was decoded from the backup');
      const warm = ir!.cacheStats();
      // Each block comes from the disk cache once at least; then the memory cache may hold it.
      assert.ok(warm.disk !== null && warm.disk.hits >= 8, `disk cache hits ${warm.disk?.hits}`);
      assert.equal(warm.disk.misses, 0);
      assert.equal(warm.disk.damaged, 0);
      await ir!.close();

      // Damage every kept block: the reads decode from the backup and stay exact.
      for (const f of kept) {
        const b = await readFile(f.path);
        b[b.length - 5]! ^= 0xff;
        await writeFile(f.path, b);
      }
      decodes.count = 0;
      await open();
      for (let at = 0; at < diskBytes; at += MiB) assert.ok((await ov().read(at, MiB)).equals(content.subarray(at, at + MiB)));
      assert.equal(ir!.cacheStats().disk!.damaged, 8);
      assert.equal(decodes.count, 8);
      await ir!.close();
      ir = undefined;

      // Nothing is ever kept without a budget.
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { diskCacheBudgetBytes: 0 });
      await ir.loadSessions();
      assert.equal(ir.cacheStats().disk, null);
      assert.match(ir.cacheStats().diskOff ?? '', /budget is 0/);
      // The restore agrees with what the sessions served.
      const out = join(dir, 'restored.img');
      const r = await cli(['restore', 'j', '--repo', repo, '--point', 'latest', '--to', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await readFile(out)).equals(content));
    } finally {
      decodes.restore();
      await ir?.close();
      await cleanup();
    }
  },
);

test('disk cache: never over its budget on disk, even while many writes run at once', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(36);
    const budget = 4 * MiB;
    // 16 writes at once, each making room for itself.
    const store = await DecodedBlockStore.open(dir, budget, { maxPendingWrites: 16 });
    let peak = 0;
    let sampling = true;
    // A sample is not atomic: a file may be removed and another written while the folders are listed. Counted by
    // inode, with the last size seen, each file counts once.
    const sizeOf = async (path: string, byInode: Map<number, number>): Promise<void> => {
      const st = await stat(path).catch(() => undefined);
      if (st?.isFile()) byInode.set(st.ino, st.size);
    };
    const sample = async (): Promise<void> => {
      while (sampling) {
        const byInode = new Map<number, number>();
        for (const n of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
          if (n.isFile()) await sizeOf(join(dir, n.name), byInode);
          else if (n.isDirectory()) for (const f of await readdir(join(dir, n.name)).catch(() => [])) await sizeOf(join(dir, n.name, f), byInode);
        }
        peak = Math.max(
          peak,
          [...byInode.values()].reduce((t, b) => t + b, 0),
        );
        await new Promise((r) => setImmediate(r));
      }
    };
    const sampler = sample();
    try {
      for (let round = 0; round < 4; round++) {
        for (let i = 0; i < 16; i++) {
          const b = randomBytes(rand, 512 * 1024);
          store.put(sha(b), b);
        }
        await store.flushed();
      }
    } finally {
      sampling = false;
      await sampler;
    }
    assert.ok(peak <= budget, `${peak} bytes on disk at the peak, budget ${budget}`);
    assert.ok(store.stats().blocks > 0);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('disk cache: a write that fails leaves nothing behind and is not counted', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const b = randomBytes(rng(37), 300_000);
    const hex = sha(b).toString('hex');
    // The block's file name is taken by a folder: the write cannot open its file.
    await mkdir(join(dir, hex.slice(0, 2), `${hex}-${b.length}`, 'in-the-way'), { recursive: true });
    const store = await DecodedBlockStore.open(dir, 16 * MiB);
    store.put(sha(b), b);
    await store.flushed();
    const s = store.stats();
    assert.equal(s.skipped, 1);
    assert.equal(s.blocks, 0);
    assert.equal(s.usedBytes, 0);
    assert.deepEqual(await readdir(dir), [hex.slice(0, 2)]);
    assert.deepEqual(await readdir(join(dir, hex.slice(0, 2))), [`${hex}-${b.length}`], 'only the folder in the way');
    await store.close();
  } finally {
    await cleanup();
  }
});

test('instant recovery: a block whose bytes do not match the digest its table records is never kept under that digest', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const digest = BlockTable.prototype.digest;
  const wrong = sha(Buffer.from('some other block'));
  // Block table slot 2 of every table claims another block's digest: its frame is intact, its digest is not its own.
  BlockTable.prototype.digest = function (this: BlockTable, i: number) {
    return i === 2 ? wrong : digest.call(this, i);
  };
  let ir: InstantRecovery | undefined;
  try {
    const content = randomBytes(rng(38), 4 * MiB);
    const repo = await repoWithPoint(dir, content, 'j');
    ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'));
    await ir.start('j', 'latest', { name: 's' });
    // The read itself is served (the frame's checksum holds); only the cache refuses the block.
    for (let at = 0; at < 4 * MiB; at += MiB) assert.ok((await ir.session('s').overlays[0]!.read(at, MiB)).equals(content.subarray(at, at + MiB)));
    await until('the mismatch to be counted', () => Promise.resolve(ir!.cacheStats().disk!.mismatched === 1 ? true : undefined), 10_000);
    await ir.close();
    const store = await DecodedBlockStore.open(join(repo, 'cache', 'blocks'), 16 * MiB);
    assert.equal(store.has(wrong, MiB), false, 'the cache would serve these bytes to every point whose block really has that digest');
    assert.equal(store.stats().blocks, 3);
    await store.close();
  } finally {
    BlockTable.prototype.digest = digest;
    await ir?.close();
    await cleanup();
  }
});

test('disk cache: blocks put while the most writes allowed are pending are dropped, not queued', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(44);
    const blocks = Array.from({ length: 80 }, () => randomBytes(rand, 64 * 1024));
    for (const [allowed, kept] of [
      [undefined, 4],
      [16, 16],
    ] as const) {
      const at = join(dir, `allowed-${allowed ?? 'default'}`);
      const store = await DecodedBlockStore.open(at, 64 * MiB, allowed === undefined ? {} : { maxPendingWrites: allowed });
      // All at once, as a fast reader's blocks come: none of these writes has ended when the next is put.
      for (const b of blocks) store.put(sha(b), b);
      await store.close();
      assert.equal((await files(at)).length, kept, `maxPendingWrites ${allowed ?? 'default (4)'}`);
      assert.equal(store.stats().skipped, blocks.length - kept);
    }
  } finally {
    await cleanup();
  }
});

test('disk cache: put() says when it drops a block for pending writes; writable() settles when one ends, and at close; a block just written is read through the descriptor its write opened', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(45);
    const [a, b, c] = [randomBytes(rand, 200_000), randomBytes(rand, 200_000), randomBytes(rand, 200_000)];
    const store = await DecodedBlockStore.open(dir, 16 * MiB, { maxPendingWrites: 1 });
    assert.equal(store.put(sha(a), a), true);
    assert.equal(store.put(sha(a), a), true, 'already being written');
    assert.equal(store.put(sha(b), b), false, 'dropped: one write is pending');
    let room = false;
    const waiting = store.writable().then(() => (room = true));
    assert.equal(room, false);
    await waiting;
    assert.equal(store.put(sha(b), b), true);
    // The files' descriptors: each write's own, kept for the reads to come.
    const open = async (): Promise<number> => {
      let n = 0;
      for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')).startsWith(dir)) n++;
      return n;
    };
    await store.flushed();
    assert.equal(await open(), 2);
    assert.ok((await store.readBlock(sha(a), a.length))!.equals(a));
    assert.ok((await store.readRange(sha(b), b.length, 70_000, 90_000))!.equals(b.subarray(70_000, 90_000)));
    assert.equal(await open(), 2, 'no descriptor opened for the reads');
    store.put(sha(c), c);
    const atClose = store.writable();
    await store.close();
    await atClose;
    assert.equal(await open(), 0);
    assert.equal(store.put(sha(c), c), true, 'closed: nothing to drop, nothing written');
    assert.equal(store.stats().written, 3);
  } finally {
    await cleanup();
  }
});

test(
  'instant recovery: blocks a fast reader decodes faster than the disk cache writes are kept once it pauses, from memory where it still holds them, else decoded again',
  { timeout: 120_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    const decodes = countDecodes();
    try {
      const content = randomBytes(rng(46), 24 * MiB);
      const { files, storage } = await latestPointFiles(await repoWithPoint(dir, content));
      const store = await DecodedBlockStore.open(join(dir, 'decoded'), 64 * MiB, { maxPendingWrites: 1 });
      const disk = await RestorePointDisk.open(files, 0, { storage, pool, cacheBytes: 8 * MiB, decoded: store });
      try {
        const blocks = disk.blockCount;
        assert.equal(blocks, 24);
        // All at once: 24 blocks decoded while one write may be pending.
        const reads = await Promise.all(Array.from({ length: blocks }, (_, i) => disk.read(i * MiB, MiB)));
        reads.forEach((got, i) => assert.ok(got.equals(content.subarray(i * MiB, (i + 1) * MiB)), `block ${i}`));
        // Each block missed the disk cache once and was decoded once for the reads; a keep, paced while they ran, may
        // already have decoded a dropped block again (it does not look the block up), so the decodes are at least that.
        assert.equal(store.stats().misses, blocks);
        assert.ok(decodes.count >= blocks, `${decodes.count} decodes`);
        const dropped = store.stats().skipped;
        assert.ok(dropped > 0 && store.stats().blocks < blocks, `${dropped} dropped, ${store.stats().blocks} kept`);
        await until('every block in the disk cache', async () => (store.stats().blocks === blocks ? true : undefined), 30_000);
        const again = decodes.count - blocks;
        assert.ok(again > 0, 'the memory cache (8 MiB) no longer held some: decoded again');
        assert.ok(again < dropped, `${again} decoded again for ${dropped} dropped: those still in memory were not`);
        for (let i = 0; i < blocks; i++) {
          const kept = await store.readBlock(disk.digestOf(i)!, MiB);
          assert.ok(kept?.equals(content.subarray(i * MiB, (i + 1) * MiB)), `block ${i} as kept`);
        }
        assert.equal(store.stats().mismatched, 0);
      } finally {
        await disk.close();
        await store.close();
      }
    } finally {
      decodes.restore();
      await pool.close();
      await cleanup();
    }
  },
);
