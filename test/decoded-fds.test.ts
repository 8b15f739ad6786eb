import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OPEN_FILES_KEPT, OpenFiles, descriptorsKept, openFileLimit, readParts } from '../src/repository/decoded-fds.js';
import { tempDir } from './helpers.js';

const openCount = (): number => readdirSync('/proc/self/fd').length;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

test('disk-cache descriptors: at most the limit stay open, the least recently used close first, and all close at the end', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    for (let i = 0; i < 20; i++) await writeFile(join(dir, `f${i}`), Buffer.alloc(64, i));
    const files = new OpenFiles(8);
    const before = openCount();
    const read = async (i: number): Promise<number> => {
      const b = Buffer.alloc(64);
      await files.use(`f${i}`, join(dir, `f${i}`), (fd) => readParts(fd, [{ into: b, position: 0 }]));
      return b[10]!;
    };
    for (let i = 0; i < 20; i++) assert.equal(await read(i), i);
    await settle();
    assert.equal(files.size, 8);
    assert.equal(openCount() - before, 8);
    // f19 was used last: it is still open, and reading it opens nothing.
    assert.equal(await read(19), 19);
    assert.equal(openCount() - before, 8);
    await files.closeAll();
    assert.equal(openCount(), before);
  } finally {
    await cleanup();
  }
});

test('disk-cache descriptors: a forgotten file is closed only after the read using it ends; a failed open is not kept', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(join(dir, 'a'), Buffer.alloc(1 << 20, 7));
    const files = new OpenFiles(4);
    const before = openCount();
    const b = Buffer.alloc(1 << 20);
    const reading = files.use('a', join(dir, 'a'), async (fd) => {
      // Removed and forgotten in the middle of the read: the descriptor must stay good until it ends.
      await unlink(join(dir, 'a'));
      files.forget('a');
      return readParts(fd, [{ into: b, position: 0 }]);
    });
    assert.deepEqual(await reading, [1 << 20]);
    assert.ok(b.every((x) => x === 7));
    await settle();
    assert.equal(openCount(), before);
    await assert.rejects(
      files.use('a', join(dir, 'a'), () => Promise.resolve(0)),
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
    );
    assert.equal(files.size, 0);
  } finally {
    await cleanup();
  }
});

test('disk-cache descriptors: a quarter of the open-file limit is kept, between 128 and 8192', () => {
  const limits = (soft: string): string =>
    `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             95488                95488                processes \nMax open files            ${soft}                1048576              files     \n`;
  assert.equal(openFileLimit(limits('20000')), 20000);
  assert.equal(openFileLimit(limits('unlimited')), Infinity);
  assert.equal(openFileLimit('no such line'), undefined);
  assert.equal(descriptorsKept(20000), 5000);
  assert.equal(descriptorsKept(1024), 256);
  assert.equal(descriptorsKept(256), 128);
  assert.equal(descriptorsKept(1048576), 8192);
  assert.equal(descriptorsKept(Infinity), 8192);
  assert.equal(descriptorsKept(undefined), 128);
  // This process: Node raised its soft limit at start, and the table follows it.
  assert.equal(OPEN_FILES_KEPT, descriptorsKept(openFileLimit()));
  if (process.platform === 'linux') assert.ok(openFileLimit() !== undefined, 'Linux says the limit');
});
