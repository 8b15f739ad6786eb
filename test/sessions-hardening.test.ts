import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { isLifeboatError } from '../src/core/errors.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository, heldPoints, withHoldsLock } from '../src/repository/index.js';
import { MiB, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';

async function openRecovery(repo: string): Promise<InstantRecovery> {
  return new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'));
}

/** Runs `fn` on a fresh repository and an InstantRecovery over it, closed in every outcome. */
async function withRecovery(fn: (ir: InstantRecovery, ctx: { dir: string; repo: string; content: Buffer }) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  let ir: InstantRecovery | undefined;
  try {
    // Job "j": one 2 MiB disk, one point.
    const content = Buffer.alloc(2 * MiB);
    randomBytes(rng(12), 512 * 1024).copy(content, 256 * 1024);
    const repo = await repoWithPoint(dir, content, 'j');
    ir = await openRecovery(repo);
    await fn(ir, { dir, repo, content });
  } finally {
    await ir?.close();
    await cleanup();
  }
}

/** Runs `fn` with the temporary folder as the working directory: a relative path accepted by mistake lands there. */
async function inFolder<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(cwd);
  }
}

function coded(code: string, message?: RegExp): (err: unknown) => boolean {
  return (err) => isLifeboatError(err) && err.code === code && (message === undefined || message.test(err.message));
}

test('add-disk on a live session keeps the open overlays: unflushed writes stay, the same objects keep serving', { timeout: 120_000 }, async () => {
  await withRecovery(async (ir, { repo, content }) => {
    await ir.start('j', 'latest', { name: 's' });
    const ov = ir.session('s').overlays[0]!;
    const first = Buffer.alloc(4096, 0x5a);
    await ov.write(4096, first); // not flushed: NBD and NFS clients flush later
    await ir.addDisk('s', MiB, 'extra');
    assert.ok((await ov.read(4096, 4096)).equals(first), 'the overlay an NBD connection holds still reads');
    assert.equal(ir.nbdExports().open('s/disk0'), ov, 'NBD gets the same overlay object');
    const second = Buffer.alloc(4096, 0xa5);
    await ov.write(1024 * 1024, second);
    await ov.flush();
    const added = ir.nbdExports().open('s/extra')!;
    await added.write(0, Buffer.alloc(512, 7));
    await added.flush();
    assert.deepEqual(
      ir.info('s')!.disks.map((d) => d.name),
      ['disk0', 'extra'],
    );
    await ir.close();

    // After a restart both writes, made before and after add-disk, are there.
    const again = await openRecovery(repo);
    try {
      await again.loadSessions();
      const disk0 = again.nbdExports().open('s/disk0')!;
      const expected = Buffer.from(content);
      first.copy(expected, 4096);
      second.copy(expected, 1024 * 1024);
      assert.ok((await disk0.read(0, disk0.size)).equals(expected), 'disk0 after restart: base + both writes');
      const extra = again.nbdExports().open('s/extra')!;
      assert.equal(extra.size, MiB);
      assert.ok((await extra.read(0, 512)).equals(Buffer.alloc(512, 7)));
      await again.stop('s');
    } finally {
      await again.close();
    }
  });
});

test('two starts with one name: exactly one succeeds, the other is refused', { timeout: 120_000 }, async () => {
  await withRecovery(async (ir) => {
    const results = await Promise.allSettled([ir.start('j', 'latest', { name: 'c' }), ir.start('j', 'latest', { name: 'c' })]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results));
    const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    assert.ok(coded('LFB_ERR_SESSION_EXISTS', /already exists/)(refused.reason), String(refused.reason));
    assert.equal(ir.list().length, 1);
    // The survivor works: it reads its base and takes writes.
    const ov = ir.session('c').overlays[0]!;
    await ov.write(0, Buffer.alloc(4096, 1));
    await ov.flush();
    assert.ok((await ov.read(0, 4096)).equals(Buffer.alloc(4096, 1)));
    await ir.stop('c');
  });
});

test('two add-disk calls on one session at once: both disks, each with its own overlay', { timeout: 120_000 }, async () => {
  await withRecovery(async (ir, { repo }) => {
    const s = await ir.start('j', 'latest', { name: 'd' });
    await Promise.all([ir.addDisk('d', MiB), ir.addDisk('d', 2 * MiB)]);
    const info = ir.info('d')!;
    const names = info.disks.map((d) => d.name);
    assert.equal(new Set(names).size, 3, `distinct disk names: ${names.join(', ')}`);
    const overlays = ir.session('d').overlays;
    assert.equal(new Set(overlays).size, 3);
    assert.equal(new Set(overlays.map((o) => o.dir)).size, 3, 'no two overlays on one map');
    assert.deepEqual((await readdir(s.dir)).filter((n) => n.startsWith('overlay-')).sort(), ['overlay-0', 'overlay-1000', 'overlay-1001']);
    // Each added disk keeps its own writes.
    await overlays[1]!.write(0, Buffer.alloc(4096, 1));
    await overlays[2]!.write(0, Buffer.alloc(4096, 2));
    await overlays[1]!.flush();
    await overlays[2]!.flush();
    await ir.close();
    const again = await openRecovery(repo);
    try {
      await again.loadSessions();
      const o = again.session('d');
      assert.equal(o.overlays.length, 3);
      assert.ok((await o.overlays[1]!.read(0, 4096)).equals(Buffer.alloc(4096, 1)));
      assert.ok((await o.overlays[2]!.read(0, 4096)).equals(Buffer.alloc(4096, 2)));
      await again.stop('d');
    } finally {
      await again.close();
    }
  });
});

test("a session's hold is written under the holds lock", { timeout: 120_000 }, async () => {
  await withRecovery(async (ir, { repo }) => {
    const jobDir = join(repo, 'jobs', 'j');
    let started: Promise<unknown> | undefined;
    let settled = false;
    await withHoldsLock(jobDir, 'test', async () => {
      // Retention is at work (it holds the lock): the session waits before it holds the point.
      started = ir.start('j', 'latest', { name: 'h' }).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(settled, false, 'start waits for the holds lock');
      assert.equal((await heldPoints(jobDir)).size, 0, 'no hold written while retention holds the lock');
    });
    await started;
    assert.deepEqual([...(await heldPoints(jobDir)).values()], ['session-h']);
    await ir.stop('h');
    assert.equal((await heldPoints(jobDir)).size, 0, 'stop releases the hold');
  });
});

test(
  'cache folders: absolute, outside the backup folders, never a folder that holds something; stop removes only what the session made',
  { timeout: 120_000 },
  async () => {
    await withRecovery(async (ir, { dir, repo }) => {
      const prod = join(dir, 'prod');
      // A folder of the user's with the session's name: refused, untouched.
      await mkdir(join(prod, 'taken'), { recursive: true });
      await writeFile(join(prod, 'taken', 'notes.txt'), 'mine');
      await assert.rejects(ir.start('j', 'latest', { name: 'taken', cacheDir: prod }), coded('LFB_ERR_TARGET_EXISTS'));
      assert.equal(await readFile(join(prod, 'taken', 'notes.txt'), 'utf8'), 'mine');
      assert.equal(ir.list().length, 0);

      await inFolder(dir, () =>
        assert.rejects(ir.start('j', 'latest', { name: 'rel', cacheDir: 'relative/dir' }), coded('LFB_ERR_INVALID_ARGUMENT', /absolute/)),
      );
      for (const inside of [repo, join(repo, 'jobs'), join(repo, 'jobs', 'j'), join(repo, 'instant')])
        await assert.rejects(ir.start('j', 'latest', { name: 'in', cacheDir: inside }), coded('LFB_ERR_INVALID_ARGUMENT', /repository/), inside);
      // The caches of decoded blocks and boot lists are not sessions' folders: stopping the session would delete them.
      for (const name of ['blocks', 'boot'])
        await assert.rejects(ir.start('j', 'latest', { name, cacheDir: join(repo, 'cache') }), coded('LFB_ERR_INVALID_ARGUMENT', /cache/), name);
      // A folder that would contain the repository (cacheDir + name = the repository itself, or above it).
      await assert.rejects(ir.start('j', 'latest', { name: 'repo', cacheDir: dir }), coded('LFB_ERR_INVALID_ARGUMENT', /repository/));
      assert.equal(ir.list().length, 0);
      assert.equal((await heldPoints(join(repo, 'jobs', 'j'))).size, 0, 'refused starts leave no hold');

      // A session in the user's folder; the user drops a file next to and inside it.
      await writeFile(join(prod, 'keep.txt'), 'keep');
      const s = await ir.start('j', 'latest', { name: 'mine', cacheDir: prod });
      assert.equal(s.dir, join(prod, 'mine'));
      await writeFile(join(s.dir, 'user-file.txt'), 'do not delete');
      await ir.stop('mine');
      assert.equal(await readFile(join(s.dir, 'user-file.txt'), 'utf8'), 'do not delete', 'stop leaves what the session did not make');
      assert.deepEqual(await readdir(s.dir), ['user-file.txt'], 'the overlays and the datastore files are gone');
      assert.equal(await readFile(join(prod, 'keep.txt'), 'utf8'), 'keep');

      // Without user files the folder goes entirely.
      const t = await ir.start('j', 'latest', { name: 'tidy', cacheDir: prod });
      await ir.stop('tidy');
      assert.equal(existsSync(t.dir), false);
    });
  },
);

test('migration targets: absolute, outside the repository and the session folder', { timeout: 120_000 }, async () => {
  await withRecovery(async (ir, { repo, dir }) => {
    const s = await ir.start('j', 'latest', { name: 'm' });
    const migrate = (to: string): Promise<unknown> => ir.migrate('m', { to, format: 'raw', rateBytesPerSec: null, finish: false });
    await inFolder(dir, () => assert.rejects(migrate('relative/target'), coded('LFB_ERR_INVALID_ARGUMENT', /absolute/)));
    await assert.rejects(migrate(join(repo, 'jobs', 'j')), coded('LFB_ERR_INVALID_ARGUMENT', /repository/));
    await assert.rejects(migrate(join(s.dir, 'files')), coded('LFB_ERR_INVALID_ARGUMENT', /repository|session/));
    assert.equal(ir.info('m')!.migration, undefined, 'no migration began');
    assert.equal(existsSync(join(repo, 'jobs', 'j', 'j-disk0.raw')), false);
    const done = await ir.migrate('m', { to: join(dir, 'production'), format: 'raw', rateBytesPerSec: null, finish: true });
    assert.equal(done.migration?.state, 'done');
    await ir.stop('m');
  });
});

test(
  'a hold left by a crash before its session was recorded is removed when the sessions are loaded; a recorded session keeps its hold',
  { timeout: 120_000 },
  async () => {
    await withRecovery(async (ir, { repo }) => {
      await ir.start('j', 'latest', { name: 'kept' });
      const jobDir = join(repo, 'jobs', 'j');
      const pointId = [...(await heldPoints(jobDir)).keys()][0]!;
      // What a server killed between writing the hold and the session's record leaves.
      await writeFile(join(jobDir, 'holds', 'session-orphan.json'), await readFile(join(jobDir, 'holds', 'session-kept.json')));
      await ir.close();
      const again = await openRecovery(repo);
      try {
        await again.loadSessions();
        const holds = (await readdir(join(jobDir, 'holds'))).sort();
        assert.deepEqual(holds, ['session-kept.json'], 'only the recorded session still holds its point');
        assert.equal((await heldPoints(jobDir)).get(pointId), 'session-kept');
      } finally {
        await again.close();
      }
    });
  },
);
