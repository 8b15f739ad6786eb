import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isLifeboatError } from '../src/core/errors.js';
import { localStorage } from '../src/storage/index.js';
import { tempDir } from './helpers.js';

test('local storage: reads under way when close() is called finish with the right bytes before the descriptor closes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = randomBytes(8 << 20);
    await writeFile(join(dir, 'f'), data);
    // Another file opened after the close may get the same descriptor number: a read still running would read it.
    await writeFile(join(dir, 'g'), Buffer.alloc(8 << 20, 0xee));
    for (let round = 0; round < 20; round++) {
      const f = await localStorage.open(join(dir, 'f'), 'read');
      const reads = Array.from({ length: 16 }, async (_, i) => {
        const buf = Buffer.alloc(512 * 1024);
        const n = await f.pread(buf, i * buf.length);
        return { i, n, buf };
      });
      const closed = f.close();
      const other = await closed.then(() => localStorage.open(join(dir, 'g'), 'read'));
      for (const { i, n, buf } of await Promise.all(reads)) {
        assert.equal(n, buf.length);
        assert.ok(buf.equals(data.subarray(i * buf.length, (i + 1) * buf.length)), `read ${i} of round ${round}`);
      }
      await other.close();
    }
  } finally {
    await cleanup();
  }
});

test('local storage: a read after close() fails with LFB_ERR_IO, not bytes of another file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(join(dir, 'f'), Buffer.alloc(4096, 1));
    const f = await localStorage.open(join(dir, 'f'), 'read');
    await f.close();
    await assert.rejects(f.pread(Buffer.alloc(16), 0), (e: unknown) => isLifeboatError(e) && e.code === 'LFB_ERR_IO');
    await assert.rejects(f.pwrite(Buffer.alloc(16), 0), (e: unknown) => isLifeboatError(e) && e.code === 'LFB_ERR_IO');
  } finally {
    await cleanup();
  }
});

test('local storage: close() called twice while a read runs resolves both times; a read started after close() fails', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(join(dir, 'f'), randomBytes(4 << 20));
    const f = await localStorage.open(join(dir, 'f'), 'read');
    const reading = f.pread(Buffer.alloc(4 << 20), 0);
    const first = f.close();
    const second = f.close();
    const late = assert.rejects(f.pread(Buffer.alloc(16), 0), (e: unknown) => isLifeboatError(e) && e.code === 'LFB_ERR_IO');
    const inTime = (p: Promise<unknown>): Promise<unknown> =>
      Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('close() never returned')), 2000).unref())]);
    assert.equal(await reading, 4 << 20);
    await inTime(first);
    await inTime(second);
    await late;
  } finally {
    await cleanup();
  }
});
