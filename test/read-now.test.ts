import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { nativeHelper } from '../src/core/native.js';
import { READ_NOW_MAX_BYTES, readNow } from '../src/storage/read-now.js';
import { readFully } from '../src/storage/storage.js';
import { readParts } from '../src/repository/decoded-fds.js';
import { cli, tempDir } from './helpers.js';

/** Drops the file's clean pages from the page cache (GNU dd's nocache flag: posix_fadvise DONTNEED), no root needed. */
function evict(path: string): void {
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/** Runs `fn` with a read-only descriptor of a new file holding `data`, out of the page cache when `evicted`. */
async function withFile(data: Buffer, evicted: boolean, fn: (fd: number, path: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'f');
    writeFileSync(path, data);
    if (evicted) {
      execFileSync('sync');
      evict(path);
    }
    const fd = openSync(path, 'r');
    try {
      await fn(fd, path);
    } finally {
      closeSync(fd);
    }
  } finally {
    await cleanup();
  }
}

test('readNow: the native helper is built, and copies what the page cache holds without the thread pool', async () => {
  assert.notEqual(nativeHelper(), null, 'build/Release/lifeboat_native.node (npm install builds it)');
  const data = randomBytes(256 * 1024);
  await withFile(data, false, async (fd) => {
    // Just written: in the page cache. Two buffers are one preadv2.
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(12288);
    assert.equal(readNow(fd, [a, b], 8192), 16384);
    assert.deepEqual(Buffer.concat([a, b]), data.subarray(8192, 8192 + 16384));
    // At the end of the file: what is there, then nothing.
    const tail = Buffer.alloc(8192);
    assert.equal(readNow(fd, [tail], data.length - 100), 100);
    assert.deepEqual(tail.subarray(0, 100), data.subarray(data.length - 100));
    assert.equal(readNow(fd, [tail], data.length), 0);
    // Larger than READ_NOW_MAX_BYTES: left to the pool.
    assert.equal(readNow(fd, [Buffer.alloc(READ_NOW_MAX_BYTES + 1)], 0), 0);
    // readFully and readParts of cached bytes ask the pool for nothing: no fs request is left pending.
    const pendingFs = (): number => process.getActiveResourcesInfo().filter((r) => r === 'FSReqCallback').length;
    const before = pendingFs();
    const whole = Buffer.alloc(20_000);
    const reading = readFully(fd, whole, 100);
    const parted = readParts(fd, [
      { into: Buffer.alloc(100), position: 0 },
      { into: Buffer.alloc(4000), position: 100 },
    ]);
    assert.equal(pendingFs(), before, 'cached: copied at once');
    assert.equal(await reading, 20_000);
    assert.deepEqual(whole, data.subarray(100, 20_100));
    assert.deepEqual(await parted, [100, 4000]);
    // The helper refuses what it cannot read at (readNow itself answers 0 for these without calling it).
    const helper = nativeHelper()!;
    for (const bad of [NaN, -1, 1.5, 2 ** 53, Infinity]) {
      assert.throws(() => helper.readNow(fd, bad, [a]), RangeError, `position ${bad}`);
      assert.equal(readNow(fd, [a], bad), 0);
    }
    assert.throws(() => helper.readNow(fd, 0, [new Uint16Array(4) as unknown as Uint8Array]), TypeError);
    assert.throws(() => helper.readNow(fd, 0, [{} as Uint8Array]), TypeError);
    assert.throws(() => helper.readNow(fd, 0, 'x' as unknown as Uint8Array[]), TypeError);
    assert.throws(() => helper.readNow(fd, 0, []), RangeError);
    // A Uint8Array that is a view into a larger buffer gets its own bytes, not the start of the buffer.
    const backing = new Uint8Array(8192);
    const view = new Uint8Array(backing.buffer, 1000, 500);
    assert.equal(readNow(fd, [view], 3000), 500);
    assert.deepEqual(Buffer.from(view), data.subarray(3000, 3500));
    assert.equal(backing[999], 0);
    assert.equal(backing[1500], 0);
  });
});

test('readNow: a file out of the page cache reads 0 at once, and readFully and readParts still read every byte', async () => {
  const data = randomBytes(1 << 20);
  await withFile(data, true, async (fd, path) => {
    assert.equal(readNow(fd, [Buffer.alloc(4096)], 512 * 1024), 0, 'a page not cached is not waited for');
    // What is not cached goes to the pool: an fs request is pending while it reads.
    const pending = readFully(fd, Buffer.alloc(4096), 900_000);
    assert.ok(process.getActiveResourcesInfo().includes('FSReqCallback'), 'read through the pool');
    assert.equal(await pending, 4096);
    const small = Buffer.alloc(5000);
    assert.equal(await readFully(fd, small, 777_777), 5000);
    assert.deepEqual(small, data.subarray(777_777, 782_777));
    evict(path);
    const head = Buffer.alloc(3000);
    const body = Buffer.alloc(40_000);
    assert.deepEqual(
      await readParts(fd, [
        { into: head, position: 1000 },
        { into: body, position: 4000 },
      ]),
      [3000, 40_000],
    );
    assert.deepEqual(head, data.subarray(1000, 4000));
    assert.deepEqual(body, data.subarray(4000, 44_000));
  });
});

test('readNow: a read partly cached copies that part, the pool reads the rest; a read past the end counts only what is there', async () => {
  const data = randomBytes(1 << 20);
  await withFile(data, true, async (fd, path) => {
    // The first 8 KiB written again (the same bytes): in the page cache, and a write reads nothing ahead.
    const w = openSync(path, 'r+');
    writeSync(w, data, 0, 8192, 0);
    closeSync(w);
    assert.equal(readNow(fd, [Buffer.alloc(48 * 1024)], 0), 8192, 'what is cached, up to the first page that is not');
    // A 48 KiB read from 0 copies those at once and reads the rest through the pool.
    const head = Buffer.alloc(100);
    const body = Buffer.alloc(48 * 1024 - 100);
    assert.deepEqual(
      await readParts(fd, [
        { into: head, position: 0 },
        { into: body, position: 100 },
      ]),
      [100, body.length],
    );
    assert.deepEqual(Buffer.concat([head, body]), data.subarray(0, 48 * 1024));
    const last = Buffer.alloc(10_000);
    const past = Buffer.alloc(10_000);
    assert.deepEqual(
      await readParts(fd, [
        { into: last, position: data.length - 4000 },
        { into: past, position: data.length + 6000 },
      ]),
      [4000, 0],
    );
    assert.deepEqual(last.subarray(0, 4000), data.subarray(data.length - 4000));
  });
});

test('readNow: a closed descriptor reads 0, and the ordinary read reports the error; an error does not turn readNow off', async () => {
  await withFile(Buffer.alloc(4096, 1), false, async (fd, path) => {
    const closed = openSync(path, 'r');
    closeSync(closed);
    assert.equal(readNow(closed, [Buffer.alloc(4096)], 0), 0);
    await assert.rejects(readFully(closed, Buffer.alloc(4096), 0), /EBADF/);
    assert.equal(readNow(fd, [Buffer.alloc(4096)], 0), 4096);
  });
});

test('without the native helper (LIFEBOAT_NATIVE=off) a backup reads the holes of a sparse image, says so, and restores the same bytes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // 32 MiB, of which 1 MiB is data (at 8 MiB); the rest holes.
    const image = join(dir, 'sparse.img');
    const data = randomBytes(1 << 20);
    writeFileSync(image, Buffer.alloc(0));
    truncateSync(image, 32 << 20);
    const fd = openSync(image, 'r+');
    writeSync(fd, data, 0, data.length, 8 << 20);
    closeSync(fd);
    // A full (--json: the bytes the process read) and an increment (its report), then a restore of the increment.
    const backUp = async (repo: string, env: Record<string, string>): Promise<{ readBytes: number; report: string }> => {
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', image])).code, 0);
      const full = await cli(['backup', 'vm', '--repo', repo, '--json'], env);
      assert.equal(full.code, 0, full.stderr);
      const increment = await cli(['backup', 'vm', '--repo', repo], env);
      assert.equal(increment.code, 0, increment.stderr);
      const restored = join(repo, 'restored.img');
      const back = await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', restored, '--format', 'raw'], env);
      assert.equal(back.code, 0, back.stderr);
      assert.deepEqual(readFileSync(restored), readFileSync(image));
      return { readBytes: (JSON.parse(full.stdout) as { io: { readBytes: number } }).io.readBytes, report: increment.stdout };
    };
    const without = await backUp(join(dir, 'off'), { LIFEBOAT_NATIVE: 'off' });
    assert.match(without.report, /note: the native helper .* is not built or is turned off: backups read the holes/);
    assert.ok(without.readBytes >= 32 << 20, `read ${without.readBytes} bytes: every byte of the image, holes too`);
    const withHelper = await backUp(join(dir, 'on'), {});
    assert.doesNotMatch(withHelper.report, /native helper/);
    assert.ok(withHelper.readBytes < 16 << 20, `read ${withHelper.readBytes} bytes: its data and not its holes`);
  } finally {
    await cleanup();
  }
});
