import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyRetention } from '../src/methods/retention-run.js';
import { Repository, heldPoints, loadJob, scanJob, withHoldsLock, writeHold } from '../src/repository/index.js';
import { MiB, cli, randomBytes, rng, tempDir, writeAt } from './helpers.js';

/** A forward job whose every run is an active full: one chain per run. Returns the repository and the chains' point ids, oldest first. */
async function threeChains(dir: string): Promise<{ repo: string; jobDir: string; points: string[] }> {
  const rand = rng(13);
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  await writeFile(disk, Buffer.alloc(2 * MiB));
  assert.equal((await cli(['repo', 'init', repo])).code, 0);
  const created = await cli(['job', 'create', 'j', '--repo', repo, '--disk', disk, '--retain-points', '9', '--active-full', 'sun,mon,tue,wed,thu,fri,sat']);
  assert.equal(created.code, 0, created.stderr);
  for (let day = 1; day <= 3; day++) {
    await writeAt(disk, randomBytes(rand, 64 * 1024), day * 256 * 1024);
    const r = await cli(['backup', 'j', '--repo', repo], { LIFEBOAT_NOW: `2026-06-0${day}T08:00:00Z` });
    assert.equal(r.code, 0, r.stderr);
  }
  const jobDir = join(repo, 'jobs', 'j');
  const state = await scanJob(jobDir);
  assert.equal(state.chains.length, 3, 'one chain per active full');
  return { repo, jobDir, points: state.chains.map((c) => c.full.root.pointId) };
}

test('retention: a held point stops only its own chain; the next chain is still deleted', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { repo, jobDir, points } = await threeChains(dir);
    await writeHold(jobDir, 'session-s', points[0]!);
    const job = { ...(await loadJob(await Repository.open(repo), 'j')), retainPoints: 1 };
    const done = await applyRetention(job, jobDir, await scanJob(jobDir), new Date('2026-06-04T08:00:00Z'));
    assert.deepEqual(
      done.map((a) => [a.action.type, a.skipped !== undefined]),
      [
        ['delete-chain', true],
        ['delete-chain', false],
      ],
    );
    const left = (await scanJob(jobDir)).chains.map((c) => c.full.root.pointId);
    assert.deepEqual(left, [points[0], points[2]], 'the held chain stays, the second chain is gone, the newest stays');
  } finally {
    await cleanup();
  }
});
test('retention reads the holds under the holds lock: a hold written while it waits protects the point', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { repo, jobDir, points } = await threeChains(dir);
    const job = { ...(await loadJob(await Repository.open(repo), 'j')), retainPoints: 1 };
    let retention: Promise<unknown> | undefined;
    await withHoldsLock(jobDir, 'test', async () => {
      // A session that got the lock first: retention must wait for it, then see its hold.
      retention = applyRetention(job, jobDir, await scanJob(jobDir), new Date('2026-06-04T08:00:00Z'));
      await new Promise((r) => setTimeout(r, 600));
      assert.equal((await scanJob(jobDir)).chains.length, 3, 'nothing deleted while a session holds the holds lock');
      await writeHold(jobDir, 'session-s', points[1]!);
    });
    await retention;
    assert.equal((await heldPoints(jobDir)).get(points[1]!), 'session-s');
    const left = (await scanJob(jobDir)).chains.map((c) => c.full.root.pointId);
    assert.deepEqual(left, [points[1], points[2]], 'the first chain is gone, the held one stays');
  } finally {
    await cleanup();
  }
});
