import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, randomBytes, readPoint, rng, tempDir, writeAt } from './helpers.js';

interface Point {
  id: string;
  createdAt: string;
  available: boolean;
}

/**
 * Retention by days through the real CLI, over two simulated weeks of daily
 * backups (LIFEBOAT_NOW): forever forward merges and forward chains with
 * active fulls. After every run the planner has nothing left to do, every
 * retained point restores bit-exact, and forever forward keeps exactly the
 * points of the window (at least three).
 */
test('retention by days over two simulated weeks, both methods: the promised points, bit-exact', { timeout: 5 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(31);
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
    const disks = { ffi: join(dir, 'ffi.img'), fwd: join(dir, 'fwd.img') };
    const content = { ffi: randomBytes(rand, 3 * 1024 * 1024), fwd: randomBytes(rand, 3 * 1024 * 1024) };
    for (const j of ['ffi', 'fwd'] as const) await writeFile(disks[j], content[j]);
    assert.equal((await cli(['job', 'create', 'ffi', '--repo', repo, '--disk', disks.ffi, '--method', 'forever', '--retain-days', '3'])).code, 0);
    assert.equal((await cli(['job', 'create', 'fwd', '--repo', repo, '--disk', disks.fwd, '--retain-days', '3', '--active-full', 'mon,thu'])).code, 0);
    const bad = await cli(['job', 'create', 'x', '--repo', repo, '--disk', disks.fwd, '--retain-days', '3', '--retain-points', '4']);
    assert.equal(bad.code, 2);
    const model = { ffi: new Map<string, Buffer>(), fwd: new Map<string, Buffer>() };
    for (let day = 5; day <= 18; day++) {
      const now = new Date(Date.UTC(2026, 0, day, 21, 30)).toISOString();
      for (const j of ['ffi', 'fwd'] as const) {
        const off = Math.floor(rand() * (content[j].length - 300_000));
        const chunk = randomBytes(rand, 300_000);
        chunk.copy(content[j], off);
        await writeAt(disks[j], chunk, off);
        const b = await cli(['backup', j, '--repo', repo], { LIFEBOAT_NOW: now });
        assert.equal(b.code, 0, b.stderr);
        const points = (JSON.parse((await cli(['points', j, '--repo', repo, '--json'])).stdout) as Point[]).filter((p) => p.available);
        model[j].set(points[points.length - 1]!.id, Buffer.from(content[j]));
        const plan = JSON.parse((await cli(['retention', 'plan', j, '--repo', repo, '--json'], { LIFEBOAT_NOW: now })).stdout) as {
          actions: unknown[];
          kept: { id: string }[];
        };
        assert.deepEqual(plan.actions, [], `day ${day} ${j}: the run left retention work undone`);
        assert.deepEqual(
          plan.kept.map((k) => k.id),
          points.map((p) => p.id),
        );
        // The window: days day-3 .. day (points at 21:30 each day), never fewer than 3.
        const inWindow = points.filter((p) => day - new Date(p.createdAt).getUTCDate() <= 3);
        if (j === 'ffi') assert.equal(points.length, Math.min(4, day - 4), `day ${day}: forever keeps exactly the window`);
        else assert.ok(points.length >= inWindow.length && inWindow.length === Math.min(4, day - 4), `day ${day}: forward keeps at least the window`);
        for (const p of points) {
          const want = model[j].get(p.id);
          assert.ok(want, `day ${day} ${j}: unknown point ${p.id}`);
          assert.ok((await readPoint(repo, j, p.id)).equals(want), `day ${day} ${j}: point ${p.id} restores wrong bytes`);
        }
      }
    }
  } finally {
    await cleanup();
  }
});
