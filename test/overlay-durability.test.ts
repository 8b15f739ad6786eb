import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CowOverlay, type ReadableDisk } from '../src/blockdev/index.js';
import { isLifeboatError } from '../src/core/errors.js';
import { FaultyStorage } from '../src/testing/faulty-storage.js';
import { randomBytes, rng, tempDir } from './helpers.js';

const KiB = 1024;
const G = 64 * KiB;

function memoryBase(data: Buffer): ReadableDisk {
  const frozen = Buffer.from(data);
  return { size: frozen.length, read: (o, l) => Promise.resolve(frozen.subarray(o, o + l)) };
}

/** A base whose reads wait until the test lets them go. */
function gatedBase(data: Buffer): ReadableDisk & { release(): void; waiting(): number } {
  let gates: (() => void)[] = [];
  return {
    size: data.length,
    read: (o, l) => new Promise<Buffer>((r) => gates.push(() => r(data.subarray(o, o + l)))),
    release() {
      const g = gates;
      gates = [];
      for (const f of g) f();
    },
    waiting: () => gates.length,
  };
}

test('overlay: concurrent flushes never write their batches over each other (every flushed granule survives a reopen)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const size = 1024 * KiB;
    const baseBytes = randomBytes(rng(1), size);
    const base = memoryBase(baseBytes);
    let ov = await CowOverlay.open(base, join(dir, 'ov'));
    const model = Buffer.from(baseBytes);
    const put = async (off: number, len: number, fill: number): Promise<void> => {
      const d = Buffer.alloc(len, fill);
      await ov.write(off, d);
      d.copy(model, off);
    };
    await put(0 * G + 100, 4 * KiB, 1);
    const a = ov.flush();
    await put(1 * G + 200, 4 * KiB, 2);
    await put(2 * G + 300, 4 * KiB, 3);
    const b = ov.flush();
    await Promise.all([a, b]);
    await put(5 * G + 400, 4 * KiB, 5);
    await ov.flush();
    await ov.close();
    ov = await CowOverlay.open(base, join(dir, 'ov'));
    assert.equal(ov.writtenGranules(), 4, 'all four flushed granules are in the map');
    assert.ok((await ov.read(0, size)).equals(model), 'every flushed write reads back after reopen');
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: a flush with nothing pending waits for the flush in flight to be durable', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const base = memoryBase(Buffer.alloc(512 * KiB, 9));
    const storage = new FaultyStorage();
    const ov = await CowOverlay.open(base, join(dir, 'ov'), { storage });
    await ov.write(0, Buffer.alloc(G, 1));
    const first = ov.flush();
    const second = ov.flush(); // nothing new pending
    let firstDone = false;
    void first.then(() => (firstDone = true));
    await second;
    assert.ok(firstDone, 'the empty flush returned before the flush carrying the write was durable');
    const mapSyncs = storage.calls.filter((c) => (c.op === 'sync' || c.op === 'datasync') && c.path.endsWith('overlay.map'));
    assert.ok(mapSyncs.length >= 2, 'the map was synced by the first flush');
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: a whole-granule write waits for a partial first write of the same granule (no stale base bytes over it)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const base = gatedBase(Buffer.alloc(256 * KiB, 0xee));
    const ov = await CowOverlay.open(base, join(dir, 'ov'));
    const partial = ov.write(G + 10, Buffer.alloc(100, 0x11)); // fills granule 1 from the base: waits at the gate
    while (base.waiting() === 0) await new Promise((r) => setImmediate(r));
    const whole = ov.write(G, Buffer.alloc(G, 0x22)); // started later: its bytes must win
    await new Promise((r) => setTimeout(r, 20));
    base.release();
    await Promise.all([partial, whole]);
    const got = await ov.read(G, G);
    assert.ok(got.equals(Buffer.alloc(G, 0x22)), `granule 1 holds ${got.subarray(0, 16).toString('hex')}…, not the whole write`);
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: a failed map write or map fsync is retried by the next flush (nothing acknowledged is lost)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const baseBytes = randomBytes(rng(2), 512 * KiB);
    const base = memoryBase(baseBytes);
    for (const fault of ['EIO', 'ENOSPC', 'short-write', 'fsync-lost'] as const) {
      const storage = new FaultyStorage();
      const where = join(dir, `ov-${fault}`);
      let ov = await CowOverlay.open(base, where, { storage });
      const model = Buffer.from(baseBytes);
      Buffer.alloc(4 * KiB, 1).copy(model, 10);
      await ov.write(10, Buffer.alloc(4 * KiB, 1));
      storage.fail({ ops: fault === 'fsync-lost' ? ['sync', 'datasync'] : ['pwrite'], path: /overlay\.map$/, nth: 0, fault });
      await assert.rejects(ov.flush(), (e) => isLifeboatError(e), `${fault}: the flush reports the failure`);
      storage.heal();
      Buffer.alloc(4 * KiB, 2).copy(model, 3 * G);
      await ov.write(3 * G, Buffer.alloc(4 * KiB, 2));
      await ov.flush();
      await ov.close();
      ov = await CowOverlay.open(base, where);
      assert.ok((await ov.read(0, model.length)).equals(model), `${fault}: the write of the failed flush is durable after the next flush`);
      await ov.close();
    }
  } finally {
    await cleanup();
  }
});

test('overlay: a failed data fsync fails every later flush and write (no COMMIT succeeds over lost data)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const base = memoryBase(Buffer.alloc(512 * KiB, 3));
    const storage = new FaultyStorage();
    const ov = await CowOverlay.open(base, join(dir, 'ov'), { storage });
    await ov.write(0, Buffer.alloc(4 * KiB, 1));
    storage.fail({ ops: ['datasync', 'sync'], path: /overlay\.data$/, nth: 0, fault: 'fsync-lost' });
    await assert.rejects(ov.flush(), (e) => isLifeboatError(e, 'LFB_ERR_IO'));
    storage.heal();
    await assert.rejects(ov.flush(), (e) => isLifeboatError(e, 'LFB_ERR_IO'), 'a later flush must not report success');
    await assert.rejects(ov.write(G, Buffer.alloc(10)), (e) => isLifeboatError(e, 'LFB_ERR_IO'));
    assert.ok((await ov.read(0, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 1)), 'reads still work');
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('overlay: ENOSPC from a write reaches the caller as LFB_ERR_NO_SPACE, and the overlay keeps working once space is back', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const base = memoryBase(Buffer.alloc(512 * KiB, 3));
    const storage = new FaultyStorage();
    const ov = await CowOverlay.open(base, join(dir, 'ov'), { storage });
    storage.fail({ ops: ['pwrite'], path: /overlay\.data$/, nth: 0, fault: 'ENOSPC' });
    await assert.rejects(ov.write(100, Buffer.alloc(10, 1)), (e) => isLifeboatError(e, 'LFB_ERR_NO_SPACE'));
    storage.heal();
    await ov.write(100, Buffer.alloc(10, 1));
    await ov.flush();
    assert.ok((await ov.read(100, 10)).equals(Buffer.alloc(10, 1)));
    await ov.close();
  } finally {
    await cleanup();
  }
});
