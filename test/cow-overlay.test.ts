import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CowOverlay, OVERLAY_DATA, OVERLAY_MAP, type ReadableDisk } from '../src/blockdev/index.js';
import { unpinned } from '../src/core/pinned-bytes.js';
import { joined, randomBytes, rng, tempDir } from './helpers.js';

const KiB = 1024;

/**
 * A read-only base that, like RestorePointDisk, returns views of its own
 * memory (not copies): the overlay must never modify what it is given.
 */
function memoryBase(data: Buffer): ReadableDisk & { reads: number } {
  const frozen = Buffer.from(data);
  const base = {
    size: frozen.length,
    reads: 0,
    read(offset: number, length: number): Promise<Buffer> {
      base.reads += 1;
      return Promise.resolve(frozen.subarray(offset, offset + length));
    },
  };
  return base;
}

test('overlay: random unaligned writes and reads match a byte model, before and after reopen', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(21);
    const size = 3 * 1024 * KiB + 12_345; // not a multiple of the granule
    const baseBytes = randomBytes(rand, size);
    const base = memoryBase(baseBytes);
    const model = Buffer.from(baseBytes);
    let ov = await CowOverlay.open(base, join(dir, 'ov'));
    for (let i = 0; i < 400; i++) {
      const len = 1 + Math.floor(rand() * (rand() < 0.8 ? 8 * KiB : 300 * KiB));
      const off = Math.floor(rand() * (size - len));
      if (rand() < 0.5) {
        const d = randomBytes(rand, len);
        await ov.write(off, d);
        d.copy(model, off);
      } else {
        assert.ok((await ov.read(off, len)).equals(model.subarray(off, off + len)), `op ${i}: read ${off}+${len}`);
      }
      if (i % 97 === 0) await ov.flush();
    }
    await ov.flush();
    await ov.close();
    ov = await CowOverlay.open(base, join(dir, 'ov'));
    assert.ok((await ov.read(0, size)).equals(model), 'reopened overlay holds every flushed write');
    await ov.close();
    assert.ok((await base.read(0, size)).equals(baseBytes), 'the base is untouched');
  } finally {
    await cleanup();
  }
});

test('overlay: a 4 KiB write copies one granule, not a backup block; concurrent first writes to one granule both land', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const size = 8 * 1024 * KiB;
    const baseBytes = randomBytes(rng(3), size);
    const base = memoryBase(baseBytes);
    const ov = await CowOverlay.open(base, join(dir, 'ov'));
    const model = Buffer.from(baseBytes);
    const a = Buffer.alloc(4 * KiB, 0xaa);
    const b = Buffer.alloc(4 * KiB, 0xbb);
    await Promise.all([ov.write(1 * 1024 * KiB + 100, a), ov.write(1 * 1024 * KiB + 40_000, b)]);
    a.copy(model, 1 * 1024 * KiB + 100);
    b.copy(model, 1 * 1024 * KiB + 40_000);
    assert.equal(ov.writtenGranules(), 1);
    assert.ok((await ov.read(0, size)).equals(model));
    await ov.flush();
    const st = await stat(join(dir, 'ov', OVERLAY_DATA));
    assert.ok(st.blocks * 512 <= 128 * KiB, `overlay data file holds ${st.blocks * 512} bytes for one 64 KiB granule`);
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: ioBytes counts the bytes read and written through it (the session I/O rates), refused ones not; a reopened overlay counts from zero', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const base = memoryBase(randomBytes(rng(5), 1024 * KiB));
    let ov = await CowOverlay.open(base, join(dir, 'ov'));
    assert.deepEqual(ov.ioBytes(), { readBytes: 0, writtenBytes: 0 });
    await ov.read(0, 4 * KiB);
    await ov.write(100, Buffer.alloc(300, 1));
    await ov.read(64 * KiB - 10, 20);
    await ov.write(200 * KiB, Buffer.alloc(64 * KiB, 2));
    await assert.rejects(ov.read(1024 * KiB - 1, 2));
    await assert.rejects(ov.write(1024 * KiB, Buffer.alloc(1)));
    assert.deepEqual(ov.ioBytes(), { readBytes: 4 * KiB + 20, writtenBytes: 300 + 64 * KiB });
    await ov.flush();
    await ov.close();
    ov = await CowOverlay.open(base, join(dir, 'ov'));
    assert.deepEqual(ov.ioBytes(), { readBytes: 0, writtenBytes: 0 });
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: after a crash, flushed writes survive and unflushed ones are old or new, never garbage; a torn log tail is ignored', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(8);
    const size = 2 * 1024 * KiB;
    const baseBytes = randomBytes(rand, size);
    const base = memoryBase(baseBytes);
    let ov = await CowOverlay.open(base, join(dir, 'ov'));
    const flushed = Buffer.from(baseBytes);
    const w1 = randomBytes(rand, 100 * KiB);
    await ov.write(10_000, w1);
    w1.copy(flushed, 10_000);
    await ov.flush();
    const after = Buffer.from(flushed);
    const w2 = randomBytes(rand, 200 * KiB);
    await ov.write(900 * KiB + 3, w2);
    w2.copy(after, 900 * KiB + 3);
    // "Crash": close without flush, and a half-written batch at the end of the log.
    await ov.close();
    await appendFile(join(dir, 'ov', OVERLAY_MAP), Buffer.from([0x4d, 0x42, 0x46, 0x4c, 9, 0, 0, 0, 1, 2]));
    ov = await CowOverlay.open(base, join(dir, 'ov'));
    const got = await ov.read(0, size);
    assert.ok(got.subarray(0, 200 * KiB).equals(flushed.subarray(0, 200 * KiB)), 'flushed write survives');
    for (let off = 0; off < size; off += 64 * KiB) {
      const g = got.subarray(off, off + 64 * KiB);
      assert.ok(g.equals(flushed.subarray(off, off + 64 * KiB)) || g.equals(after.subarray(off, off + 64 * KiB)), `granule at ${off} is neither old nor new`);
    }
    // The log still accepts new batches after the torn tail.
    await ov.write(0, Buffer.alloc(10, 7));
    await ov.flush();
    await ov.close();
    ov = await CowOverlay.open(base, join(dir, 'ov'));
    assert.deepEqual([...(await ov.read(0, 10))], Array(10).fill(7));
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: a 2 TiB disk costs a 4 MiB map, and out-of-range I/O is refused', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const size = 2 * 1024 ** 4;
    const base: ReadableDisk = { size, read: (_o, l) => Promise.resolve(Buffer.alloc(l)) };
    const ov = await CowOverlay.open(base, join(dir, 'ov'));
    await ov.write(size - 5, Buffer.from('tail!'));
    await ov.flush();
    assert.equal((await ov.read(size - 5, 5)).toString(), 'tail!');
    await assert.rejects(ov.read(size - 4, 5), /outside the disk/);
    await assert.rejects(ov.write(-1, Buffer.alloc(1)), /outside the disk/);
    await ov.close();
    const re = await CowOverlay.open(base, join(dir, 'ov'));
    assert.equal((await re.read(size - 5, 5)).toString(), 'tail!');
    await re.close();
    await assert.rejects(CowOverlay.open({ size: size / 2, read: base.read }, join(dir, 'ov')), /another disk size/);
  } finally {
    await cleanup();
  }
});

test('overlay: readPinned lends the base’s bytes where no write touched the range, and gives its own where one did; counted and checked as read', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const content = randomBytes(rng(6), 1024 * KiB);
    let lent = 0;
    const plain = memoryBase(content);
    const lending: ReadableDisk = {
      size: plain.size,
      read: (o, l) => plain.read(o, l),
      async readPinned(o, l) {
        lent += 1;
        return { ...unpinned(Buffer.from(content.subarray(o, o + l))), release: () => void (lent -= 1) };
      },
    };
    const ov = await CowOverlay.open(lending, join(dir, 'ov'));
    try {
      const a = await ov.readPinned(10 * KiB, 4 * KiB);
      assert.ok(joined(a).equals(content.subarray(10 * KiB, 14 * KiB)));
      assert.equal(lent, 1, 'untouched: the base lent it');
      a.release();
      assert.equal(lent, 0, 'and got it back');
      await ov.write(130 * KiB, Buffer.alloc(100, 7));
      const untouched = await ov.readPinned(300 * KiB, 8 * KiB);
      assert.equal(lent, 1, 'a write elsewhere changes nothing');
      untouched.release();
      const mixed = await ov.readPinned(128 * KiB, 8 * KiB);
      const expected = Buffer.from(content.subarray(128 * KiB, 136 * KiB));
      expected.fill(7, 2 * KiB, 2 * KiB + 100);
      assert.ok(joined(mixed).equals(expected), 'the written bytes over the base’s');
      assert.equal(lent, 0, 'a range with written bytes is the caller’s own, nothing lent');
      mixed.release();
      await assert.rejects(ov.readPinned(1024 * KiB - 1, 2), /outside the disk/);
      assert.equal(ov.ioBytes().readBytes, 4 * KiB + 8 * KiB + 8 * KiB);
      // A base that does not lend: the overlay's bytes are the caller's.
      const ov2 = await CowOverlay.open(plain, join(dir, 'ov2'));
      const p = await ov2.readPinned(0, 100);
      assert.ok(joined(p).equals(content.subarray(0, 100)));
      p.release();
      await ov2.close();
    } finally {
      await ov.close();
    }
  } finally {
    await cleanup();
  }
});
