import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupFileReader } from '../src/repository/backup-file.js';
import { scanJob } from '../src/repository/job-state.js';
import { copyOfFile } from '../src/methods/copy-run.js';
import { LifeboatService } from '../src/app/service.js';
import { systemClock } from '../src/core/clock.js';
import { LifeboatError, isLifeboatError } from '../src/core/errors.js';
import { LockFile } from '../src/storage/lock-file.js';
import { BIN, cli, randomBytes, readPoint, rng, tempDir, writeAt, MiB } from './helpers.js';

const BS = 256 * 1024;

interface Copied {
  readonly id: string;
  readonly kind: string;
  readonly sourcePointId: string;
}

/** The target's points, oldest first, with the source point each is a copy of; every point is whole (nothing damaged, unavailable or half written). */
async function targetPoints(repo: string, job = 'vm'): Promise<Copied[]> {
  const state = await scanJob(join(repo, 'jobs', job));
  assert.deepEqual(state.damaged, [], 'no damaged file on the target');
  assert.deepEqual(state.unavailable, [], 'no unavailable point on the target');
  assert.deepEqual(state.orphans, [], 'no orphan on the target');
  const out: Copied[] = [];
  for (const c of state.chains)
    for (const f of [c.full, ...c.increments]) {
      const of = copyOfFile(f.root.meta);
      assert.ok(of, `${f.name} records its source point`);
      out.push({ id: f.root.pointId, kind: f.root.kind, sourcePointId: of.pointId });
    }
  return out;
}

async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cli(args, env);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A source repository with a job on one raw disk; `backup(day)` changes a few blocks and backs up, remembering the disk's bytes by point. */
async function setup(dir: string, method: 'forward' | 'forever', seed: number, retain = 4) {
  const rand = rng(seed);
  const disk = join(dir, 'vm.img');
  const size = 6 * MiB + 12345;
  const data = Buffer.alloc(size);
  randomBytes(rand, 3 * MiB).copy(data, MiB);
  await writeFile(disk, data);
  const repo = join(dir, 'src');
  await ok(['repo', 'init', repo, '--block-size', '256K']);
  await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', method, '--retain-points', String(retain)]);
  const bytesAt = new Map<string, Buffer>();
  const backup = async (iso: string): Promise<string> => {
    for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
      const at = Math.floor(rand() * (size - 100_000));
      // Now and then a block becomes zeros, so increments record zero entries too.
      const bytes = rand() < 0.2 ? Buffer.alloc(BS) : randomBytes(rand, 1 + Math.floor(rand() * 90_000));
      bytes.copy(data, at, 0, Math.min(bytes.length, size - at));
      await writeAt(disk, bytes.subarray(0, Math.min(bytes.length, size - at)), at);
    }
    const r = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: iso })) as { pointId: string };
    bytesAt.set(r.pointId, Buffer.from(data));
    return r.pointId;
  };
  return { repo, backup, bytesAt };
}

const day = (n: number): string => new Date(Date.parse('2026-03-02T22:00:00Z') + n * 86_400_000).toISOString();

/** Every point of the target reads back bit-exact the bytes its source point had. */
async function checkTarget(target: string, bytesAt: ReadonlyMap<string, Buffer>): Promise<Copied[]> {
  const points = await targetPoints(target);
  for (const p of points) {
    const want = bytesAt.get(p.sourcePointId);
    assert.ok(want, `source point ${p.sourcePointId} known`);
    assert.ok((await readPoint(target, 'vm', p.id)).equals(want), `target point ${p.id} (copy of ${p.sourcePointId}) reads bit-exact`);
  }
  return points;
}

for (const method of ['forward', 'forever'] as const) {
  test(`copy of a ${method} job: new points copied each run, restored bit-exact from the target alone`, async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { repo, backup, bytesAt } = await setup(dir, method, method === 'forward' ? 3 : 4);
      const source: string[] = [];
      for (let d = 0; d < 3; d++) source.push(await backup(day(d)));
      const target = join(dir, 'dst');
      await ok(['copy', 'create', 'off', '--repo', repo, '--to-repo', target, '--job', 'vm', '--retain-points', '30']);
      const first = JSON.parse(await ok(['copy', 'run', 'off', '--repo', repo, '--json'])) as {
        copied: { kind: string; blocksCopied: number; blocksUnchanged: number }[];
      };
      assert.deepEqual(
        first.copied.map((c) => c.kind),
        ['full', 'increment', 'increment'],
      );
      // Increments hold only what changed: most blocks are the previous point's.
      assert.ok(first.copied[1]!.blocksUnchanged > first.copied[1]!.blocksCopied);
      assert.deepEqual(
        (await targetPoints(target)).map((p) => p.sourcePointId),
        source,
      );
      // `points --json` on the target names each point's source point.
      const listed = JSON.parse(await ok(['points', 'vm', '--repo', target, '--json'])) as { id: string; copyOf?: { pointId: string; repoId: string } }[];
      assert.deepEqual(
        listed.map((p) => p.copyOf?.pointId),
        source,
      );
      assert.ok(listed.every((p) => p.copyOf?.repoId !== undefined));
      const again = JSON.parse(await ok(['copy', 'run', 'off', '--repo', repo, '--json'])) as { copied: unknown[] };
      assert.equal(again.copied.length, 0, 'nothing new: nothing copied');
      // Forever-forward merges the source's oldest points away; the target keeps its own.
      for (let d = 3; d < 7; d++) source.push(await backup(day(d)));
      await ok(['copy', 'run', 'off', '--repo', repo]);
      assert.deepEqual(
        (await targetPoints(target)).map((p) => p.sourcePointId),
        source,
      );
      // The target alone: the source moved away.
      await rename(repo, join(dir, 'src-away'));
      assert.equal((await checkTarget(target, bytesAt)).length, 7);
      assert.equal((await cli(['verify', 'vm', '--repo', target])).code, 0);
    } finally {
      await cleanup();
    }
  });
}

test('copy: a damaged source block stops the copy of its point and leaves the target as it was', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { repo, backup, bytesAt } = await setup(dir, 'forward', 5);
    await backup(day(0));
    await backup(day(1));
    const target = join(dir, 'dst');
    await ok(['copy', 'create', 'off', '--repo', repo, '--to-repo', target, '--job', 'vm']);
    await ok(['copy', 'run', 'off', '--repo', repo]);
    const damaged = await backup(day(2));
    const before = (await readdir(join(target, 'jobs', 'vm'))).sort();
    // Flip a byte in the first stored block of the new increment.
    const name = (await readdir(join(repo, 'jobs', 'vm'))).find((n) => n.includes(damaged))!;
    const file = await BackupFileReader.open(join(repo, 'jobs', 'vm', name));
    const t = file.root.tables[0]!;
    const slot = [...Array(t.count).keys()].find((i) => !t.isZero(i))!;
    const offset = t.offset(slot) + Math.floor(t.storedLength(slot) / 2);
    await file.close();
    const path = join(repo, 'jobs', 'vm', name);
    const bytes = await readFile(path);
    bytes[offset] = bytes[offset]! ^ 0x40;
    await writeFile(path, bytes);
    const r = await cli(['copy', 'run', 'off', '--repo', repo]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /LFB_ERR_BLOCK_CORRUPT/);
    assert.deepEqual((await readdir(join(target, 'jobs', 'vm'))).sort(), before, 'the target is as it was');
    assert.equal((await checkTarget(target, bytesAt)).length, 2);
  } finally {
    await cleanup();
  }
});

test('copy: the target keeps its own retention (--retain-points 2); a target of another block size is refused', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { repo, backup, bytesAt } = await setup(dir, 'forward', 6, 10);
    const source: string[] = [];
    for (let d = 0; d < 4; d++) source.push(await backup(day(d)));
    const target = join(dir, 'dst');
    await ok(['copy', 'create', 'two', '--repo', repo, '--to-repo', target, '--job', 'vm', '--retain-points', '2']);
    await ok(['copy', 'run', 'two', '--repo', repo]);
    // Chains of two points on the target (a full when the latest chain holds what retention keeps): the older chain goes whole.
    const kept = await checkTarget(target, bytesAt);
    assert.deepEqual(
      kept.map((p) => [p.kind, p.sourcePointId]),
      [
        ['full', source[2]],
        ['increment', source[3]],
      ],
    );
    assert.equal((await ok(['copy', 'list', '--repo', repo])).trim().split('\n').length, 1);
    const other = join(dir, 'other');
    await ok(['repo', 'init', other, '--block-size', '1M']);
    const refused = await cli(['copy', 'create', 'x', '--repo', repo, '--to-repo', other, '--job', 'vm']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /same block size/);
    await ok(['copy', 'delete', 'two', '--repo', repo]);
    assert.equal((await cli(['copy', 'show', 'two', '--repo', repo])).code, 3);
  } finally {
    await cleanup();
  }
});

/**
 * Model over simulated weeks: a daily backup, then a copy run killed at a
 * random moment (a crash point: a real SIGKILL) on most days. After each
 * kill the target holds only whole points; the next run resumes. At the end
 * every copied point restores bit-exact from the target alone.
 */
test('copy model: daily backups over three weeks, copy runs killed at random moments, GFS on the target', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(77);
    const { repo, backup, bytesAt } = await setup(dir, 'forever', 8, 5);
    const target = join(dir, 'dst');
    await ok(['copy', 'create', 'off', '--repo', repo, '--to-repo', target, '--job', 'vm', '--retain-points', '4', '--gfs', 'weekly=2']);
    let kills = 0;
    for (let d = 0; d < 21; d++) {
      await backup(day(d));
      const now = new Date(Date.parse(day(d)) + 3600_000).toISOString();
      if (rand() < 0.6) {
        const r = await cli(['copy', 'run', 'off', '--repo', repo], { LIFEBOAT_NOW: now, LIFEBOAT_CRASH_AT: String(1 + Math.floor(rand() * 60)) });
        if (r.signal === 'SIGKILL') kills += 1;
        else assert.equal(r.code, 0, r.stderr);
        await targetPoints(target);
      }
      if (rand() < 0.7) await ok(['copy', 'run', 'off', '--repo', repo], { LIFEBOAT_NOW: now });
    }
    await ok(['copy', 'run', 'off', '--repo', repo], { LIFEBOAT_NOW: day(21) });
    assert.ok(kills >= 5, `${kills} kills`);
    const sourcePoints = (JSON.parse(await ok(['points', 'vm', '--repo', repo, '--json'])) as { id: string }[]).map((p) => p.id);
    await rename(repo, join(dir, 'src-away'));
    const kept = await checkTarget(target, bytesAt);
    // The newest source point is copied; the target keeps its newest 4 at least, and the weekly fulls of GFS.
    assert.equal(kept.at(-1)!.sourcePointId, sourcePoints.at(-1));
    assert.ok(kept.length >= 4, `${kept.length} points kept`);
    assert.ok(kept.filter((p) => p.kind === 'full').length >= 2, 'GFS keeps weekly fulls');
    const names = await readdir(join(target, 'jobs', 'vm'));
    assert.deepEqual(
      names.filter((n) => n.endsWith('.tmp')),
      [],
    );
  } finally {
    await cleanup();
  }
});

test('copy run: Ctrl-C stops at a safe point (exit 130) and leaves no half point; the next run copies the point whole', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'big.img');
    const fh = await open(disk, 'w');
    try {
      for (let i = 0; i < 16; i++) await fh.write(cryptoRandomBytes(16 * MiB));
    } finally {
      await fh.close();
    }
    const repo = join(dir, 'src');
    await ok(['repo', 'init', repo]);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk]);
    const made = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'])) as { pointId: string };
    const target = join(dir, 'dst');
    await ok(['copy', 'create', 'off', '--repo', repo, '--to-repo', target, '--job', 'vm']);
    const jobDir = join(target, 'jobs', 'vm');
    const child = spawn(process.execPath, [BIN, 'copy', 'run', 'off', '--repo', repo], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    // Once the point's temporary file is there, the copy is under way.
    let seen = false;
    for (let i = 0; i < 3000 && !seen && child.exitCode === null; i++) {
      seen = (await readdir(jobDir).catch(() => [] as string[])).some((n) => n.endsWith('.tmp'));
      if (!seen) await new Promise((res) => setTimeout(res, 10));
    }
    assert.ok(seen, `the copy's temporary file never appeared: ${err}`);
    child.kill('SIGINT');
    assert.equal(await exited, 130, err);
    assert.match(err, /LFB_ERR_INTERRUPTED/);
    assert.deepEqual(await targetPoints(target), [], 'no point on the target');
    assert.deepEqual(
      (await readdir(jobDir)).filter((n) => n.endsWith('.tmp')),
      [],
      'the temporary file is removed',
    );
    // Nothing left locked: the next run copies the point whole.
    await ok(['copy', 'run', 'off', '--repo', repo]);
    assert.deepEqual(
      (await targetPoints(target)).map((p) => p.sourcePointId),
      [made.pointId],
    );
    assert.equal((await cli(['verify', 'vm', '--repo', target])).code, 0);
  } finally {
    await cleanup();
  }
});

test('a copy run stopped while it waits for the job lock stops within a poll, also when it has nothing to copy', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(21), MiB));
    const repo = join(dir, 'src');
    await ok(['repo', 'init', repo]);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk]);
    await ok(['backup', 'vm', '--repo', repo]);
    await ok(['copy', 'create', 'off', '--repo', repo, '--to-repo', join(dir, 'dst'), '--job', 'vm']);
    await ok(['copy', 'run', 'off', '--repo', repo]);
    // A backup of the job holds its lock (the usual case: a copy chained after it); the copy waits for it.
    const held = await LockFile.acquire(join(repo, 'jobs', 'vm', 'lock'), 'the test');
    try {
      const stop = new AbortController();
      const run = new LifeboatService(systemClock).runCopy(repo, 'off', { waitMs: 10 * 60_000, signal: stop.signal });
      await new Promise((r) => setTimeout(r, 300));
      const from = performance.now();
      stop.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'a person stopped it'));
      const err = await run.then(
        () => assert.fail('the copy ran to the end after its stop'),
        (e: unknown) => e,
      );
      assert.ok(isLifeboatError(err, 'LFB_ERR_INTERRUPTED'), String(err));
      assert.ok(performance.now() - from < 2000, `stopped after ${(performance.now() - from).toFixed(0)} ms`);
    } finally {
      await held.release();
    }
  } finally {
    await cleanup();
  }
});
