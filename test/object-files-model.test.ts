import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExtentMap, inMemory, inPack } from '../src/objects/extent-map.js';
import { LocalObjectStore } from '../src/objects/local-object-store.js';
import { ObjectFileStorage } from '../src/objects/object-files.js';
import { PACKS, ROOTS } from '../src/objects/file-root.js';
import { LifeboatError, isLifeboatError } from '../src/core/errors.js';
import type { ByteRange, ObjectHead, ObjectInfo, ObjectStore, PutOptions } from '../src/objects/object-store.js';
import { prng } from '../src/testing/prng.js';

/** A seeded generator: a failure prints its seed and replays. */
function rng(seed: number): (n: number) => number {
  const next = prng(seed);
  return (n) => Math.floor(next() * n);
}

function bytes(r: (n: number) => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r(256);
  return b;
}

/** What the map says the bytes of [0, size) are, holes as zeros. */
function render(map: ExtentMap, packs: Map<string, Buffer>): Buffer {
  const out = Buffer.alloc(map.size);
  for (const e of map.within(0, map.size)) {
    const src = e.data ?? packs.get(e.pack!)!.subarray(e.packOffset, e.packOffset + e.length);
    src.copy(out, e.offset);
  }
  return out;
}

test('extent map: random writes, truncates and flushes agree with a byte model; extents stay sorted and apart', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const map = new ExtentMap();
    const packs = new Map<string, Buffer>();
    let model = Buffer.alloc(0);
    for (let step = 0; step < 200; step++) {
      const op = r(10);
      if (op < 7) {
        const at = r(5000);
        const data = bytes(r, 1 + r(700));
        map.place(inMemory(at, data));
        if (at + data.length > model.length) model = Buffer.concat([model, Buffer.alloc(at + data.length - model.length)]);
        data.copy(model, at);
      } else if (op < 8) {
        const n = r(6000);
        map.truncate(n);
        model = n <= model.length ? Buffer.from(model.subarray(0, n)) : Buffer.concat([model, Buffer.alloc(n - model.length)]);
      } else {
        const records = map.unflushed();
        const name = `p${step}`;
        packs.set(name, Buffer.concat(records.map((x) => x.data!)));
        map.markFlushed(records, name);
      }
      assert.equal(map.size, model.length, `seed ${seed} step ${step}`);
      assert.ok(render(map, packs).equals(model), `seed ${seed} step ${step}`);
      const all = map.all();
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.offset + all[i - 1]!.length <= all[i]!.offset, `seed ${seed}: overlap`);
    }
  }
  // Sequential writes flushed together are one extent.
  const seq = new ExtentMap();
  for (let i = 0; i < 8; i++) seq.place(inMemory(i * 10, Buffer.alloc(10, i)));
  seq.markFlushed(seq.unflushed(), 'p');
  assert.deepEqual(seq.all(), [inPack(0, 80, 'p', 0)]);
});

async function withStorage(fn: (s: ObjectFileStorage, store: LocalObjectStore, root: string) => Promise<void>, packBytes = 4096): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-objfiles-'));
  const store = await LocalObjectStore.open(dir);
  let clock = 1_700_000_000_000;
  const s = new ObjectFileStorage(store, '/repo', { packBytes, now: () => clock++ });
  try {
    await fn(s, store, '/repo');
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function names(store: LocalObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.name);
  return out;
}

test('object files: random writes through small packs read back as the model, after each commit and after reopening', async () => {
  await withStorage(async (s, store) => {
    for (let seed = 1; seed <= 3; seed++) {
      const r = rng(seed);
      const path = `/repo/f${seed}`;
      let model = Buffer.alloc(0);
      let f = await s.open(path, 'create');
      for (let step = 0; step < 120; step++) {
        const op = r(20);
        if (op < 15) {
          const at = r(64 * 1024);
          const data = bytes(r, 1 + r(3000));
          await f.pwrite(data, at);
          if (at + data.length > model.length) model = Buffer.concat([model, Buffer.alloc(at + data.length - model.length)]);
          data.copy(model, at);
        } else if (op < 16) {
          const n = r(70 * 1024);
          await f.truncate(n);
          model = n <= model.length ? Buffer.from(model.subarray(0, n)) : Buffer.concat([model, Buffer.alloc(n - model.length)]);
        } else if (op < 18) {
          await f.sync();
        } else {
          await f.close();
          f = await s.open(path, 'write');
        }
        const got = Buffer.alloc(model.length + 10);
        assert.equal(await f.pread(got, 0), model.length, `seed ${seed} step ${step}`);
        assert.ok(got.subarray(0, model.length).equals(model), `seed ${seed} step ${step}`);
      }
      await f.close();
      const again = await s.open(path, 'read');
      const got = Buffer.alloc(model.length);
      assert.equal(await again.pread(got, 0), model.length);
      assert.ok(got.equals(model), `seed ${seed} after reopen`);
      await again.close();
      // One root per file once committed: the older ones were removed at each commit.
      assert.equal((await names(store, `${ROOTS}f${seed}#`)).length, 1);
    }
  });
});

test('object files: a commit lost to another writer fails with LFB_ERR_OBJECT_EXISTS; the winner’s bytes stay', async () => {
  await withStorage(async (s, store) => {
    const other = new ObjectFileStorage(store, '/repo');
    const a = await s.open('/repo/x', 'create');
    const b = await other.open('/repo/x', 'write');
    await a.pwrite(Buffer.from('first'), 0);
    await a.sync();
    await b.pwrite(Buffer.from('second'), 0);
    await assert.rejects(b.sync(), (e: unknown) => isLifeboatError(e, 'LFB_ERR_OBJECT_EXISTS'));
    const r = await s.open('/repo/x', 'read');
    const got = Buffer.alloc(10);
    assert.equal(await r.pread(got, 0), 5);
    assert.equal(got.subarray(0, 5).toString(), 'first');
    await a.close();
    await r.close();
  });
});

test('object files: collect removes unreferenced packs past the grace and stale roots, keeps every named pack', async () => {
  await withStorage(async (s, store) => {
    const f = await s.open('/repo/a/b', 'create');
    await f.pwrite(Buffer.alloc(10_000, 1), 0);
    await f.sync();
    await f.pwrite(Buffer.alloc(10_000, 2), 0);
    await f.sync();
    await f.close();
    // A writer that flushed a pack and died before its commit.
    const dead = await s.open('/repo/a/c', 'create');
    await dead.pwrite(Buffer.alloc(9000, 3), 0);
    // A stale root left by a commit whose clean-up failed.
    const staleRoot = `${ROOTS}a/b#0000000000000001`;
    await store.put(staleRoot, Buffer.from('{}'));
    const packsBefore = await names(store, PACKS);
    const young = await s.collect(60_000);
    assert.equal(young.packsRemoved, 0, 'nothing younger than the grace');
    assert.equal(young.rootsRemoved, 1);
    assert.deepEqual(await names(store, `${ROOTS}a/b#`), [`${ROOTS}a/b#0000000000000003`]);
    const old = await s.collect(0);
    assert.ok(old.packsRemoved >= 2, `the first commit's packs and the dead writer's: ${JSON.stringify(old)}`);
    assert.ok(old.bytesFreed >= 10_000 + 9000 - 4096);
    assert.equal((await names(store, PACKS)).length, packsBefore.length - old.packsRemoved);
    const r = await s.open('/repo/a/b', 'read');
    const got = Buffer.alloc(10_000);
    assert.equal(await r.pread(got, 0), 10_000);
    assert.ok(got.equals(Buffer.alloc(10_000, 2)));
    await r.close();
    await dead.close();
  });
});

/** A local object store whose chosen calls fail (or land, then fail) once, and whose root PUTs can be held. */
class FaultyObjectStore implements ObjectStore {
  readonly location: string;
  readonly retention = false;
  failGet: ((name: string) => LifeboatError | undefined) | undefined;
  /** The put lands, then its caller is told it timed out (an answer lost on the way). */
  loseAnswerOf: ((name: string) => boolean) | undefined;
  hold: { test: (name: string) => boolean; release: Promise<void>; reached: () => void } | undefined;

  constructor(private readonly inner: ObjectStore) {
    this.location = inner.location;
  }

  async put(name: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    const held = this.hold;
    if (held?.test(name)) {
      this.hold = undefined;
      held.reached();
      await held.release;
    }
    await this.inner.put(name, data, options);
    if (this.loseAnswerOf?.(name) === true) {
      this.loseAnswerOf = undefined;
      throw new LifeboatError('LFB_ERR_STORE_TIMEOUT', `put ${name}: no answer within 30 s`);
    }
  }

  get(name: string, range?: ByteRange): Promise<Buffer> {
    const err = this.failGet?.(name);
    if (err !== undefined) {
      this.failGet = undefined;
      return Promise.reject(err);
    }
    return this.inner.get(name, range);
  }

  head(name: string): Promise<ObjectHead | undefined> {
    return this.inner.head(name);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }

  delete(name: string): Promise<void> {
    return this.inner.delete(name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

async function withFaultyStorage(fn: (s: ObjectFileStorage, store: FaultyObjectStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-objfiles-faults-'));
  const store = new FaultyObjectStore(await LocalObjectStore.open(dir));
  try {
    await fn(new ObjectFileStorage(store, '/repo', { packBytes: 4096 }), store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function readAllOf(s: ObjectFileStorage, path: string): Promise<string> {
  const f = await s.open(path, 'read');
  try {
    const buf = Buffer.alloc(await f.size());
    await f.pread(buf, 0);
    return buf.toString();
  } finally {
    await f.close();
  }
}

test('object files: a store that times out reading a root or a pack fails the call with LFB_ERR_IO (the seam’s device error), its own code in the details', async () => {
  await withFaultyStorage(async (s, store) => {
    const f = await s.open('/repo/a', 'create');
    await f.pwrite(Buffer.alloc(10_000, 7), 0);
    await f.close();
    const timeout = (name: string): LifeboatError => new LifeboatError('LFB_ERR_STORE_TIMEOUT', `get ${name}: no answer within 30 s`);
    store.failGet = (name) => (name.startsWith(ROOTS) ? timeout(name) : undefined);
    const atOpen = await s.open('/repo/a', 'read').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isLifeboatError(atOpen, 'LFB_ERR_IO'), String(atOpen));
    assert.equal(atOpen.details['storeCode'], 'LFB_ERR_STORE_TIMEOUT');
    const r = await s.open('/repo/a', 'read');
    store.failGet = (name) => (name.startsWith(PACKS) ? timeout(name) : undefined);
    const atRead = await r.pread(Buffer.alloc(100), 0).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isLifeboatError(atRead, 'LFB_ERR_IO'), String(atRead));
    assert.equal(atRead.details['storeCode'], 'LFB_ERR_STORE_TIMEOUT');
    await r.close();
  });
});

test('object files: a commit that landed but whose answer was lost is found at the next sync, not taken for another writer’s', async () => {
  await withFaultyStorage(async (s, store) => {
    const f = await s.open('/repo/a', 'create');
    await f.pwrite(Buffer.from('one'), 0);
    store.loseAnswerOf = (name) => name.startsWith(`${ROOTS}a#`);
    await assert.rejects(f.sync(), (e: unknown) => isLifeboatError(e, 'LFB_ERR_IO'));
    await f.pwrite(Buffer.from('two'), 3);
    await f.sync();
    await f.close();
    assert.equal(await readAllOf(s, '/repo/a'), 'onetwo');
  });
});

for (const during of ['rename', 'remove'] as const) {
  test(`object files: a ${during} while the file's sync is under way leaves the file ${during === 'rename' ? 'under its new name only, with the synced bytes' : 'removed'}`, async () => {
    await withFaultyStorage(async (s, store) => {
      const f = await s.open('/repo/a', 'create');
      await f.pwrite(Buffer.from('synced'), 0);
      let reached!: () => void;
      const atPut = new Promise<void>((r) => (reached = r));
      let release!: () => void;
      store.hold = { test: (name) => name.startsWith(`${ROOTS}a#`), release: new Promise<void>((r) => (release = r)), reached };
      const syncing = f.sync();
      await atPut;
      const moving = during === 'rename' ? s.rename('/repo/a', '/repo/b') : s.remove('/repo/a');
      await moving;
      release();
      await syncing;
      await f.close();
      assert.deepEqual(await s.list('/repo'), during === 'rename' ? ['b'] : []);
      if (during === 'rename') assert.equal(await readAllOf(s, '/repo/b'), 'synced');
    });
  });
}
