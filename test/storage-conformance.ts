// The storage seam's conformance suite: what every Storage and StorageFile
// promises (src/storage/storage.ts), run on each implementation by its own test
// file (storage-local: the local file system). It tests the contract the
// repository relies on, not POSIX accidents: no crash behaviour of unsynced
// writes, no modes, nothing about what a second handle sees during a write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { isLifeboatError } from '../src/core/errors.js';
import type { Storage } from '../src/storage/storage.js';
import { prng } from '../src/testing/prng.js';

/** Opens a storage of its own for one test; root is an empty folder under which the test makes its files. */
export type OpenStorage = () => Promise<{ storage: Storage; root: string; close(): Promise<void> }>;

const MiB = 1 << 20;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Seeded bytes: a failure replays from its seed. */
function seeded(rand: () => number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) out.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  for (let i = n - (n % 4); i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

/** The model of a file: `data` written at `position` (zeros in any hole before it). */
function apply(model: Buffer, data: Uint8Array, position: number): Buffer {
  const end = position + data.length;
  const out = end <= model.length ? model : Buffer.concat([model, Buffer.alloc(end - model.length)]);
  out.set(data, position);
  return out;
}

/** Fails with LFB_ERR_IO (and, when given, that errno in its details). */
async function failsIo(p: Promise<unknown>, errno?: string, about = ''): Promise<void> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.ok(isLifeboatError(caught, 'LFB_ERR_IO'), `${about}: expected a LifeboatError LFB_ERR_IO, got ${String(caught)}`);
  if (errno !== undefined) assert.equal(caught.details.errno, errno, `${about}: ${caught.message}`);
}

async function readAll(storage: Storage, path: string): Promise<Buffer> {
  const f = await storage.open(path, 'read');
  try {
    const size = await f.size();
    const buf = Buffer.alloc(size);
    assert.equal(await f.pread(buf, 0), size, `${path}: the whole file reads`);
    return buf;
  } finally {
    await f.close();
  }
}

async function writeNew(storage: Storage, path: string, data: Uint8Array): Promise<void> {
  const f = await storage.open(path, 'replace');
  try {
    await f.pwrite(data, 0);
  } finally {
    await f.close();
  }
}

export function storageConformance(label: string, open: OpenStorage): void {
  const t = (name: string, fn: (storage: Storage, root: string) => Promise<void>): void => {
    test(`${label}: ${name}`, async () => {
      const { storage, root, close } = await open();
      try {
        await storage.mkdir(root);
        assert.deepEqual(await storage.list(root), [], 'the root starts empty');
        await fn(storage, root);
      } finally {
        await close();
      }
    });
  };

  t('open read and write of an absent path fail with LFB_ERR_IO (errno ENOENT) and create nothing', async (storage, root) => {
    for (const path of [join(root, 'absent'), join(root, 'no-folder', 'absent')])
      for (const mode of ['read', 'write'] as const) await failsIo(storage.open(path, mode), 'ENOENT', `${mode} ${path}`);
    assert.deepEqual(await storage.list(root), []);
  });

  t('open create makes an empty file listed at once, and keeps an existing one; open replace empties an existing file', async (storage, root) => {
    const f = await storage.open(join(root, 'new'), 'create');
    try {
      assert.equal(await f.size(), 0);
      assert.deepEqual(await storage.list(root), ['new'], 'listed while still open');
    } finally {
      await f.close();
    }
    await writeNew(storage, join(root, 'kept'), Buffer.from('kept bytes'));
    const again = await storage.open(join(root, 'kept'), 'create');
    try {
      assert.equal(await again.size(), 10);
      const buf = Buffer.alloc(10);
      assert.equal(await again.pread(buf, 0), 10);
      assert.equal(buf.toString(), 'kept bytes');
    } finally {
      await again.close();
    }
    assert.equal((await readAll(storage, join(root, 'kept'))).toString(), 'kept bytes');
    await writeNew(storage, join(root, 'emptied'), Buffer.from('old content'));
    const r = await storage.open(join(root, 'emptied'), 'replace');
    try {
      assert.equal(await r.size(), 0);
    } finally {
      await r.close();
    }
    assert.equal((await readAll(storage, join(root, 'emptied'))).length, 0, 'a reopen reads nothing');
    const probe = await storage.open(join(root, 'emptied'), 'read');
    try {
      assert.equal(await probe.pread(Buffer.alloc(16), 0), 0);
    } finally {
      await probe.close();
    }
    assert.deepEqual(await storage.list(root), ['emptied', 'kept', 'new']);
  });

  t('pwrite and pread match a model: holes read as zeros, the last overlapping write wins, a read past the end is short', async (storage, root) => {
    const rand = prng(1);
    let model: Buffer = Buffer.alloc(0);
    const f = await storage.open(join(root, 'f'), 'create');
    try {
      const writes: [number, number][] = [
        [0, 100],
        [50, 100], // overlaps the first
        [10_000, 300], // after a hole of zeros
        [5000, 20], // inside the hole
        [0, 10],
        [10_250, 4096], // overlaps the end and extends the file
        [9_999, 2],
      ];
      for (const [position, length] of writes) {
        const data = seeded(rand, length);
        await f.pwrite(data, position);
        model = apply(model, data, position);
        assert.equal(await f.size(), model.length, `size after a write of ${length} at ${position}`);
      }
      assert.equal(model.length, 10_250 + 4096);
      assert.ok(model.subarray(150, 5000).equals(Buffer.alloc(4850)), 'the model has its hole');
      for (const [position, length] of [
        [0, model.length],
        [0, 1],
        [99, 3],
        [150, 4850],
        [5010, 5000],
        [model.length - 1, 1],
      ] as const) {
        const buf = Buffer.alloc(length);
        assert.equal(await f.pread(buf, position), length, `pread ${length} at ${position}`);
        assert.ok(buf.equals(model.subarray(position, position + length)), `bytes of ${length} at ${position}`);
      }
      const tail = Buffer.alloc(100, 0xaa);
      assert.equal(await f.pread(tail, model.length - 30), 30, 'a read across the end counts the bytes before it');
      assert.ok(tail.subarray(0, 30).equals(model.subarray(model.length - 30)));
      assert.equal(await f.pread(Buffer.alloc(10), model.length), 0, 'at the end: nothing');
      assert.equal(await f.pread(Buffer.alloc(10), model.length + 12_345), 0, 'after the end: nothing');
    } finally {
      await f.close();
    }
    assert.ok((await readAll(storage, join(root, 'f'))).equals(model), 'a reopen reads the model');
  });

  t('truncate shrinks (the bytes after it are gone) and extends (the new bytes are zeros)', async (storage, root) => {
    const data = seeded(prng(2), 10_000);
    await writeNew(storage, join(root, 't'), data);
    const f = await storage.open(join(root, 't'), 'write');
    try {
      await f.truncate(4000);
      assert.equal(await f.size(), 4000);
      const buf = Buffer.alloc(5000);
      assert.equal(await f.pread(buf, 0), 4000);
      assert.ok(buf.subarray(0, 4000).equals(data.subarray(0, 4000)));
      await f.truncate(9000);
      assert.equal(await f.size(), 9000);
      const grown = Buffer.alloc(9000, 0xff);
      assert.equal(await f.pread(grown, 0), 9000);
      assert.ok(grown.equals(Buffer.concat([data.subarray(0, 4000), Buffer.alloc(5000)])), 'the old tail does not come back');
    } finally {
      await f.close();
    }
    assert.equal((await readAll(storage, join(root, 't'))).length, 9000);
  });

  t('written bytes are read by a new open after sync and close, after close alone, and after datasync and close', async (storage, root) => {
    const rand = prng(3);
    for (const flush of ['sync', 'none', 'datasync'] as const) {
      const path = join(root, flush);
      const data = seeded(rand, 70_000);
      const f = await storage.open(path, 'create');
      await f.pwrite(data.subarray(0, 30_000), 0);
      await f.pwrite(data.subarray(30_000), 30_000);
      if (flush === 'sync') await f.sync();
      if (flush === 'datasync') await f.datasync();
      await f.close();
      const back = await readAll(storage, path);
      assert.equal(back.length, data.length, flush);
      assert.ok(back.equals(data), flush);
    }
  });

  t('a 24 MiB file written in 1 MiB writes, then 200 small writes at random offsets, reads back equal to the model', async (storage, root) => {
    const rand = prng(4);
    const int = (n: number): number => Math.floor(rand() * n);
    const path = join(root, 'large');
    let model: Buffer = seeded(rand, 24 * MiB);
    const w = await storage.open(path, 'replace');
    try {
      for (let at = 0; at < model.length; at += MiB) await w.pwrite(model.subarray(at, at + MiB), at);
    } finally {
      await w.close();
    }
    const f = await storage.open(path, 'write');
    try {
      assert.equal(await f.size(), 24 * MiB);
      for (let i = 0; i < 200; i++) {
        const length = i % 10 === 0 ? 1 : 1 + int(64 * 1024);
        let position: number;
        if (i % 50 === 49)
          position = model.length + int(100_000); // past the end: a hole, then the write
        else if (i % 4 === 0)
          position = Math.max(0, (1 + int(24)) * MiB - 1 - int(length - 1)); // across a 1 MiB boundary
        else position = int(model.length);
        const data = seeded(rand, length);
        await f.pwrite(data, position);
        model = apply(model, data, position);
      }
      assert.equal(await f.size(), model.length);
    } finally {
      await f.close();
    }
    assert.ok(model.length > 24 * MiB, 'some writes went past the end');
    const r = await storage.open(path, 'read');
    try {
      assert.equal(await r.size(), model.length);
      const whole = Buffer.alloc(model.length);
      assert.equal(await r.pread(whole, 0), model.length);
      assert.equal(sha(whole), sha(model));
      for (let i = 0; i < 100; i++) {
        const length = 1 + int(i % 2 === 0 ? 4096 : 2 * MiB);
        const position = int(model.length + 1000);
        const buf = Buffer.alloc(length);
        const expected = model.subarray(position, position + length);
        assert.equal(await r.pread(buf, position), expected.length, `pread ${length} at ${position}`);
        assert.ok(buf.subarray(0, expected.length).equals(expected), `bytes of ${length} at ${position}`);
      }
    } finally {
      await r.close();
    }
  });

  t('32 preads in flight at once on one open file each get their own bytes', async (storage, root) => {
    const rand = prng(5);
    const data = seeded(rand, 4 * MiB);
    await writeNew(storage, join(root, 'c'), data);
    const f = await storage.open(join(root, 'c'), 'read');
    try {
      const reads = Array.from({ length: 32 }, async (_, i) => {
        const length = i % 3 === 0 ? 4096 : 1 + Math.floor(rand() * 512 * 1024);
        const position = Math.floor(rand() * (data.length - length));
        const buf = Buffer.alloc(length);
        return { i, position, n: await f.pread(buf, position), buf };
      });
      for (const { i, position, n, buf } of await Promise.all(reads)) {
        assert.equal(n, buf.length, `read ${i}`);
        assert.ok(buf.equals(data.subarray(position, position + buf.length)), `read ${i}: ${buf.length} at ${position}`);
      }
    } finally {
      await f.close();
    }
  });

  t('pread and pwrite after close fail with LFB_ERR_IO; close twice is fine', async (storage, root) => {
    const f = await storage.open(join(root, 'closed'), 'create');
    await f.pwrite(Buffer.from('content'), 0);
    await f.close();
    await failsIo(f.pread(Buffer.alloc(4), 0), undefined, 'pread after close');
    await failsIo(f.pwrite(Buffer.from('x'), 0), undefined, 'pwrite after close');
    await f.close();
    const r = await storage.open(join(root, 'closed'), 'read');
    await r.close();
    await r.close();
    await failsIo(r.pread(Buffer.alloc(4), 0), undefined, 'pread after two closes');
    assert.equal((await readAll(storage, join(root, 'closed'))).toString(), 'content', 'the refused write changed nothing');
  });

  t('rename moves the bytes and the name, replaces an existing target, and of an absent name fails with LFB_ERR_IO (ENOENT)', async (storage, root) => {
    const [a, b, c] = ['a.tmp', 'b', 'c'].map((n) => join(root, n)) as [string, string, string];
    await writeNew(storage, a, Buffer.from('the new content'));
    await storage.rename(a, b);
    assert.equal((await readAll(storage, b)).toString(), 'the new content');
    await failsIo(storage.open(a, 'read'), 'ENOENT', 'the old name');
    assert.deepEqual(await storage.list(root), ['b']);
    await writeNew(storage, c, Buffer.from('a much longer content that the rename replaces'));
    await storage.rename(b, c);
    assert.equal((await readAll(storage, c)).toString(), 'the new content', 'the target holds the source bytes only');
    assert.deepEqual(await storage.list(root), ['c']);
    await failsIo(storage.rename(join(root, 'absent'), join(root, 'd')), 'ENOENT', 'rename of an absent name');
    assert.deepEqual(await storage.list(root), ['c']);
  });

  t('remove: true when the file was there (then it is gone from list and open), false when absent', async (storage, root) => {
    await writeNew(storage, join(root, 'gone'), Buffer.from('g'));
    await writeNew(storage, join(root, 'kept'), Buffer.from('k'));
    assert.equal(await storage.remove(join(root, 'gone')), true);
    assert.deepEqual(await storage.list(root), ['kept']);
    await failsIo(storage.open(join(root, 'gone'), 'read'), 'ENOENT', 'a removed file');
    assert.equal(await storage.remove(join(root, 'gone')), false, 'removed twice');
    assert.equal(await storage.remove(join(root, 'never')), false);
    assert.equal(await storage.remove(join(root, 'no-folder', 'never')), false);
    assert.equal((await readAll(storage, join(root, 'kept'))).toString(), 'k');
  });

  t('list: the sorted names of the direct children, files and folders alike, each once; [] for no folder; mkdir -p', async (storage, root) => {
    const d = join(root, 'd');
    await storage.mkdir(d);
    for (const name of ['f2', 'F', 'f1', 'a-b', 'a.b']) await writeNew(storage, join(d, name), Buffer.from(name));
    await storage.mkdir(join(d, 'empty'));
    await storage.mkdir(join(d, 'full'));
    await writeNew(storage, join(d, 'full', 'x'), Buffer.from('x'));
    await writeNew(storage, join(d, 'full', 'y'), Buffer.from('y'));
    assert.deepEqual(await storage.list(d), ['F', 'a-b', 'a.b', 'empty', 'f1', 'f2', 'full'].sort());
    assert.deepEqual(await storage.list(join(d, 'full')), ['x', 'y']);
    assert.deepEqual(await storage.list(join(d, 'empty')), []);
    assert.deepEqual(await storage.list(join(root, 'nothing')), []);
    assert.deepEqual(await storage.list(join(root, 'nothing', 'deeper')), []);
    await storage.mkdir(join(root, 'a', 'b', 'c'));
    assert.deepEqual(await storage.list(join(root, 'a')), ['b']);
    assert.deepEqual(await storage.list(join(root, 'a', 'b')), ['c']);
    assert.deepEqual(await storage.list(join(root, 'a', 'b', 'c')), []);
    await storage.mkdir(join(root, 'a', 'b'));
    await storage.mkdir(join(root, 'a', 'b', 'c'));
    await storage.mkdir(d);
    assert.deepEqual(await storage.list(join(root, 'a')), ['b'], 'mkdir again changes nothing');
    assert.deepEqual(await storage.list(root), ['a', 'd']);
    assert.equal((await readAll(storage, join(d, 'full', 'x'))).toString(), 'x');
  });

  t('syncDir of an existing folder resolves', async (storage, root) => {
    await storage.mkdir(join(root, 's'));
    await writeNew(storage, join(root, 's', 'f'), Buffer.from('f'));
    await storage.syncDir(join(root, 's'));
    await storage.syncDir(root);
  });
}
