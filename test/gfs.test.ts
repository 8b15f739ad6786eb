import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixedClock } from '../src/core/clock.js';
import { LifeboatService } from '../src/app/index.js';
import { parseCompression } from '../src/compress/codec.js';
import { randomBytes, readPoint, rng, tempDir, writeAt } from './helpers.js';

const BS = 256 * 1024;
const DAY = 86_400_000;

/**
 * GFS over simulated months, clock injected: a forward job with an active
 * full every Monday, a run every day, 3 short-term points, weekly=3 and
 * monthly=2. After every run: the planner has nothing left to do, every
 * listed point reads back bit-exact, and exactly the fulls the GFS rule
 * flags survive besides the short-term points.
 */
for (const method of ['forward', 'forever'] as const) {
  test(
    `GFS over 11 simulated weeks, ${method}: flagged fulls kept for their periods, everything else by the short-term rule, bit-exact`,
    { timeout: 5 * 60_000 },
    async () => {
      const { dir, cleanup } = await tempDir();
      try {
        const rand = rng(method === 'forward' ? 71 : 73);
        const disk = join(dir, 'disk.img');
        const content = randomBytes(rand, 4 * BS + 1000);
        await writeFile(disk, content);
        const repo = join(dir, 'repo');
        const day0 = Date.parse('2026-01-05T21:00:00Z'); // a Monday
        let svc = new LifeboatService(fixedClock(new Date(day0)));
        await svc.initRepository(repo, BS, parseCompression('zstd:1'));
        await svc.createJob(repo, { name: 'vm', disks: [disk], method, retainPoints: 3, activeFullDays: ['mon'], gfs: { weekly: 3, monthly: 2, yearly: 0 } });
        const model = new Map<string, Buffer>();
        for (let day = 0; day < 77; day++) {
          const now = new Date(day0 + day * DAY);
          svc = new LifeboatService(fixedClock(now));
          const off = Math.floor(rand() * (content.length - 20_000));
          const chunk = randomBytes(rand, 20_000);
          chunk.copy(content, off);
          await writeAt(disk, chunk, off);
          const r = await svc.backup(repo, 'vm', {});
          model.set(r.pointId, Buffer.from(content));
          const plan = await svc.retentionPlan(repo, 'vm');
          assert.deepEqual(plan.actions, [], `day ${day}: retention left work undone`);
          const { points } = await svc.points(repo, 'vm');
          assert.deepEqual(
            plan.kept.map((k) => k.id),
            points.map((p) => p.id),
          );
          // Survivors: the newest 3 points (with what they need) and the flagged Monday fulls.
          for (const k of plan.kept) assert.match(k.reason, /GFS full|newest 3 points|later points of chain|whose newest point/);
          assert.ok(points.length <= 3 + 5 + 7, `day ${day}: ${points.length} points is more than GFS and retention allow`);
          for (const p of points) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `day ${day}: point ${p.id} differs`);
        }
        // At the end (Sunday March 22): weekly fulls of the weeks of March 2, 9 and 16; the
        // monthly ones are February 2 and March 2 (which already carries its weekly reason).
        const plan = await svc.retentionPlan(repo, 'vm');
        const { points } = await svc.points(repo, 'vm');
        const created = new Map(points.map((p) => [p.id, p.createdAt.slice(0, 10)]));
        const weekly = plan.kept.filter((k) => k.reason.startsWith('weekly')).map((k) => created.get(k.id));
        const monthly = plan.kept.filter((k) => k.reason.startsWith('monthly')).map((k) => created.get(k.id));
        assert.deepEqual(weekly, ['2026-03-02', '2026-03-09', '2026-03-16']);
        assert.deepEqual(monthly, ['2026-02-02']);
      } finally {
        await cleanup();
      }
    },
  );
}

/**
 * The reported case: forever forward, 2 days kept, weekly=2, no full day
 * scheduled. The job's one full used to be merged away once its week left
 * GFS, leaving no GFS point. Now the first run of each week makes a synthetic
 * full, and the weekly fulls of the newest two weeks are always there.
 */
test('GFS with no full day scheduled, forever, retain-days 2, weekly=2: every week of the newest two keeps a full, never merged away', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(79);
    const disk = join(dir, 'disk.img');
    const content = randomBytes(rand, 2 * BS + 500);
    await writeFile(disk, content);
    const repo = join(dir, 'repo');
    const day0 = Date.parse('2026-03-04T20:00:00Z'); // a Wednesday
    let svc = new LifeboatService(fixedClock(new Date(day0)));
    await svc.initRepository(repo, BS, parseCompression('zstd:1'));
    await svc.createJob(repo, {
      name: 'vm',
      disks: [disk],
      method: 'forever',
      retainPoints: 7,
      retainDays: 2,
      activeFullDays: [],
      gfs: { weekly: 2, monthly: 0, yearly: 0 },
    });
    const model = new Map<string, Buffer>();
    const monday = (ms: number): string => {
      const d = new Date(ms - ((new Date(ms).getUTCDay() + 6) % 7) * DAY);
      return d.toISOString().slice(0, 10);
    };
    for (let day = 0; day < 22; day++) {
      const now = day0 + day * DAY;
      svc = new LifeboatService(fixedClock(new Date(now)));
      const off = Math.floor(rand() * (content.length - 5000));
      const chunk = randomBytes(rand, 5000);
      chunk.copy(content, off);
      await writeAt(disk, chunk, off);
      const r = await svc.backup(repo, 'vm', {});
      model.set(r.pointId, Buffer.from(content));
      const plan = await svc.retentionPlan(repo, 'vm');
      assert.deepEqual(plan.actions, [], `day ${day}: retention left work undone`);
      const { points, state } = await svc.points(repo, 'vm');
      // Fulls made as fulls (a merged full has moved on from its point), by week.
      const weeks = [...new Set(state.chains.filter((c) => c.full.root.mergedCount === 0).map((c) => monday(c.full.root.createdAtMs)))];
      // The weeks the job has run in, newest two: each has its GFS full.
      const want = [...new Set([now - 7 * DAY, now].filter((t) => t >= day0 - ((new Date(day0).getUTCDay() + 6) % 7) * DAY).map(monday))];
      for (const w of want) assert.ok(weeks.includes(w), `day ${day}: no full of the week of ${w} (fulls: ${weeks.join(', ')})`);
      assert.ok(points.length <= 16, `day ${day}: ${points.length} points (two weeks of chains at most)`);
      for (const p of points) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `day ${day}: point ${p.id} differs`);
    }
  } finally {
    await cleanup();
  }
});
