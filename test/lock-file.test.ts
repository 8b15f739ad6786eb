import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LifeboatError } from '../src/core/errors.js';
import { LockFile } from '../src/storage/lock-file.js';
import { tempDir } from './helpers.js';

const WORKER = fileURLToPath(new URL('./lock-worker.js', import.meta.url));

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => p.on('close', r));
  return p.pid!;
}

const workers = new Set<ChildProcess>();

function runWorker(args: string[]): Promise<{ overlaps: number }> {
  return new Promise((resolve, reject) => {
    const p = execFile(process.execPath, [WORKER, ...args], { timeout: 150_000 }, (err, stdout) => {
      workers.delete(p);
      if (err) reject(err);
      else resolve(JSON.parse(stdout) as { overlaps: number });
    });
    workers.add(p);
  });
}

test('lock: many processes racing over stale locks: one holder at a time, no lost update', { timeout: 180_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const lock = join(dir, 'lock');
    const counter = join(dir, 'counter');
    const dead = await deadPid();
    await writeFile(counter, '0');
    await writeFile(lock, JSON.stringify({ pid: dead, host: hostname(), since: new Date().toISOString() }));
    const processes = 6;
    const iterations = 25;
    const results = await Promise.all(
      Array.from({ length: processes }, () => runWorker([lock, counter, join(dir, 'inside'), String(iterations), String(dead)])),
    );
    assert.equal(
      results.reduce((a, r) => a + r.overlaps, 0),
      0,
      'two processes were inside the lock at once',
    );
    assert.equal(Number(await readFile(counter, 'utf8')), processes * iterations, 'updates made under the lock were lost');
    const left = (await readdir(dir)).filter((n) => n !== 'counter' && n !== 'lock');
    assert.deepEqual(left, [], 'no break or temporary files are left behind');
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await Promise.all([...workers].map((w) => new Promise((r) => w.on('close', r))));
    await cleanup();
  }
});

test('lock: a process killed while taking over a stale lock does not block the next one', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const lock = join(dir, 'lock');
    const dead = await deadPid();
    const stale = JSON.stringify({ pid: dead, host: hostname(), since: new Date().toISOString() });
    await writeFile(lock, stale);
    // The break file a taker-over killed at that moment leaves: named after the stale lock's inode and content.
    const key = createHash('sha256')
      .update(`${(await stat(lock)).ino}\n${stale}`)
      .digest('hex')
      .slice(0, 16);
    await writeFile(`${lock}.break-${key}`, stale);
    const held = await LockFile.acquire(lock, 'test lock');
    assert.equal(JSON.parse(await readFile(lock, 'utf8')).pid, process.pid);
    assert.deepEqual(await readdir(dir), ['lock'], 'the dead break file is cleared with the stale lock');
    await held.release();
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await cleanup();
  }
});

test('lock: a live holder is never taken over; release removes only its own lock', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const lock = join(dir, 'lock');
    const first = await LockFile.acquire(lock, 'job "vm"');
    await assert.rejects(LockFile.acquire(lock, 'job "vm"'), (err: LifeboatError) => {
      assert.equal(err.code, 'LFB_ERR_JOB_LOCKED');
      assert.match(err.message, new RegExp(`job "vm" is busy: process ${process.pid} on `));
      return true;
    });
    await first.release();
    const second = await LockFile.acquire(lock, 'job "vm"');
    await first.release(); // a second release of the old lock must not remove the new holder's
    assert.equal(JSON.parse(await readFile(lock, 'utf8')).pid, process.pid);
    await assert.rejects(LockFile.acquire(lock, 'job "vm"'), /is busy/);
    await second.release();
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await cleanup();
  }
});

test('lock: a wait for a held lock ends with LFB_ERR_INTERRUPTED within a poll of its stop, holding nothing', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'lock');
    const held = await LockFile.acquire(path, 'the holder');
    const stop = new AbortController();
    const waiting = LockFile.acquire(path, 'the waiter', { waitMs: 60_000, pollMs: 50, signal: stop.signal });
    await new Promise((r) => setTimeout(r, 120));
    stop.abort();
    const err = (await waiting.then(
      () => assert.fail('the waiter took a held lock'),
      (e: unknown) => e,
    )) as LifeboatError;
    assert.equal(err.code, 'LFB_ERR_INTERRUPTED');
    await held.release();
    assert.deepEqual(await readdir(dir), [], 'the waiter left no file');
  } finally {
    await cleanup();
  }
});
