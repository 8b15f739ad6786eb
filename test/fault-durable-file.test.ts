import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isLifeboatError } from '../src/core/errors.js';
import { DurableFile, readWholeFile, writeFileAtomic } from '../src/storage/index.js';
import { FaultyStorage, type Fault } from '../src/testing/faulty-storage.js';
import { tempDir } from './helpers.js';

const CODE: Record<Fault, string> = { EIO: 'LFB_ERR_IO', 'fsync-lost': 'LFB_ERR_IO', ENOSPC: 'LFB_ERR_NO_SPACE', 'short-write': 'LFB_ERR_NO_SPACE' };

for (const fault of ['EIO', 'ENOSPC', 'fsync-lost'] as const) {
  test(`a write-back that fails (${fault}) fails the next sync and every later one, with ${CODE[fault]}`, async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const storage = new FaultyStorage().fail({ ops: ['datasync'], nth: 0, fault });
      const f = await DurableFile.create(join(dir, 'f'), storage);
      await f.write(Buffer.alloc(4096, 1), 0);
      f.writeBehind();
      await f.write(Buffer.alloc(4096, 2), 4096);
      for (let i = 0; i < 2; i++) {
        await assert.rejects(f.sync(), (e: unknown) => isLifeboatError(e) && e.code === CODE[fault] && /background write-back failed/.test(e.message));
      }
      await f.close();
      await f.close();
      assert.deepEqual(
        storage.calls.filter((c) => c.fault !== undefined).map((c) => c.op),
        ['datasync'],
      );
    } finally {
      await cleanup();
    }
  });
}

test('writeFileAtomic: a fault at any of its storage calls leaves the old content and no temporary file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'doc.json');
    await writeFileAtomic(path, Buffer.from('old'));
    const counting = new FaultyStorage();
    await writeFileAtomic(path, Buffer.from('old'), counting);
    assert.ok(counting.calls.length >= 6, `open, pwrite, sync, close, rename, syncDir: ${counting.calls.map((c) => c.op).join(', ')}`);
    for (let i = 0; i < counting.calls.length; i++) {
      for (const fault of ['EIO', 'ENOSPC', 'short-write', 'fsync-lost'] as const) {
        const storage = new FaultyStorage().fail({ nth: i, fault });
        let error: unknown;
        await writeFileAtomic(path, Buffer.from('new content'), storage).catch((e: unknown) => (error = e));
        const hit = storage.calls.find((c) => c.fault !== undefined);
        const content = await readFile(path, 'utf8');
        if (error === undefined) assert.equal(content, 'new content', `${fault} at call ${i}: completed`);
        else {
          assert.ok(hit, `${fault} at call ${i}: failed without a fault: ${String(error)}`);
          assert.ok(isLifeboatError(error) && error.code === CODE[fault], `${fault} at call ${i} (${hit.op}): ${String(error)}`);
          // Once renamed, the new content is in place even if the folder's fsync then failed.
          assert.equal(content, hit.op === 'syncDir' ? 'new content' : 'old', `${fault} at call ${i} (${hit.op})`);
        }
        assert.deepEqual((await readdir(dir)).sort(), ['doc.json'], `${fault} at call ${i}: no temporary file`);
        await writeFileAtomic(path, Buffer.from('old'));
      }
    }
  } finally {
    await cleanup();
  }
});

test('readWholeFile: a fault at any of its calls is a coded error, and the file is closed', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'doc');
    await writeFileAtomic(path, Buffer.from('content'));
    const counting = new FaultyStorage();
    assert.equal((await readWholeFile(path, counting)).toString(), 'content');
    assert.deepEqual(
      counting.calls.map((c) => c.op),
      ['open', 'size', 'pread', 'close'],
    );
    for (let i = 0; i < counting.calls.length; i++) {
      const storage = new FaultyStorage().fail({ nth: i, fault: 'EIO' });
      await assert.rejects(readWholeFile(path, storage), (e: unknown) => isLifeboatError(e, 'LFB_ERR_IO'));
      // After a failed open there is nothing to close; otherwise the file is closed once.
      assert.equal(storage.calls.filter((c) => c.op === 'close').length, i === 0 ? 0 : 1, `EIO at call ${i}`);
    }
  } finally {
    await cleanup();
  }
});
