import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { availablePoints, cli, randomBytes, readPoint, rng, tempDir, writeAt, type ListedPoint } from './helpers.js';

type Point = ListedPoint;

const dayAt = (day: number, hour = 20): string => new Date(Date.UTC(2026, 0, day, hour)).toISOString(); // Jan 2026: the 5th is a Monday

const points = (repo: string): Promise<Point[]> => availablePoints(repo);

async function mutate(disk: string, content: { data: Buffer }, rand: () => number): Promise<void> {
  for (let k = 0; k < 3; k++) {
    const off = Math.floor(rand() * (content.data.length - 50_000));
    const chunk = rand() < 0.2 ? Buffer.alloc(50_000) : randomBytes(rand, 50_000);
    chunk.copy(content.data, off);
    await writeAt(disk, chunk, off);
  }
}

async function setup(dir: string, rand: () => number, extra: string[]): Promise<{ repo: string; disk: string; content: { data: Buffer } }> {
  const repo = join(dir, 'repo');
  const disk = join(dir, 'disk.img');
  const content = { data: randomBytes(rand, 20 * 256 * 1024 + 999) };
  await writeFile(disk, content.data);
  assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
  const j = await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--synthetic-full', 'thu', '--transform-to-rollbacks', ...extra]);
  assert.equal(j.code, 0, j.stderr);
  return { repo, disk, content };
}

/** Drops from the model the points retention took, failing if any other point is gone. */
async function prune(repo: string, model: Map<string, Buffer>, where: string, mayGo: ReadonlySet<string>): Promise<Point[]> {
  const list = await points(repo);
  for (const id of [...model.keys()]) {
    if (list.some((p) => p.id === id)) continue;
    assert.ok(mayGo.has(id), `${where}: point ${id} was lost`);
    model.delete(id);
  }
  return list;
}

/** Every point of the model restores exact; only those in `mayGo` (due to retention) may be gone. */
async function checkAll(repo: string, model: Map<string, Buffer>, where: string, mayGo: ReadonlySet<string> = new Set()): Promise<Point[]> {
  const list = await prune(repo, model, where, mayGo);
  for (const p of list) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `${where}: point ${p.id} (${p.kind}) restores wrong bytes`);
  const v = await cli(['verify', 'vm', '--repo', repo, '--all']);
  assert.equal(v.code, 0, `${where}: ${v.stdout}${v.stderr}`);
  return list;
}

test(
  'transform: after each synthetic full the previous chain becomes rollbacks of it, one full remains, every point exact',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(71);
      const { repo, disk, content } = await setup(dir, rand, ['--retain-points', '1000']);
      assert.equal(
        (await cli(['job', 'create', 'y', '--repo', repo, '--disk', disk, '--transform-to-rollbacks'])).code,
        2,
        '--transform-to-rollbacks needs --synthetic-full',
      );
      const model = new Map<string, Buffer>();
      let sinceTransform = 0;
      for (let day = 5; day <= 22; day++) {
        await mutate(disk, content, rand);
        if (day === 12) {
          // The disk grows inside the second chain: rollbacks must carry each point's own size.
          const grown = Buffer.concat([content.data, randomBytes(rand, 3 * 256 * 1024 + 5)]);
          await truncate(disk, grown.length);
          await writeAt(disk, grown.subarray(content.data.length), content.data.length);
          content.data = grown;
        }
        const r = await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: dayAt(day) });
        assert.equal(r.code, 0, r.stderr);
        const res = JSON.parse(r.stdout) as {
          pointId: string;
          synthetic?: unknown;
          transform?: { rollbacks: string[]; removed: string[]; blocksCopied: number };
        };
        model.set(res.pointId, Buffer.from(content.data));
        sinceTransform += 1;
        const thursday = day === 8 || day === 15 || day === 22;
        assert.equal(res.transform !== undefined, thursday, `day ${day}: a transform ${thursday ? 'expected' : 'unexpected'}`);
        if (thursday) {
          // Every point since the last transform became a rollback; the old chain's files are gone.
          assert.equal(res.transform!.rollbacks.length, sinceTransform - 1);
          sinceTransform = 1;
          const files = await readdir(join(repo, 'jobs', 'vm'));
          assert.equal(files.filter((f) => f.endsWith('.vbk')).length, 1, `day ${day}: one full`);
          assert.equal(files.filter((f) => f.endsWith('.vib')).length, 0, `day ${day}: no increments left`);
          assert.equal(files.filter((f) => f.endsWith('.vrb')).length, model.size - 1);
          const list = await checkAll(repo, model, `day ${day}`);
          assert.equal(new Set(list.map((p) => p.chainId)).size, 1, 'one chain');
          assert.deepEqual(
            list.map((p) => p.kind),
            [...Array(model.size - 1).fill('rollback'), 'full'],
          );
        }
      }
      const list = await checkAll(repo, model, 'the end');
      assert.equal(list.length, model.size);
      assert.equal(list.filter((p) => p.kind === 'full').length, 1);
      const plan = JSON.parse((await cli(['retention', 'plan', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: dayAt(22) })).stdout) as { actions: unknown[] };
      assert.deepEqual(plan.actions, []);
    } finally {
      await cleanup();
    }
  },
);

test('transform with short retention: the oldest rollbacks go at once, the newest points stay exact', { timeout: 5 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(72);
    const { repo, disk, content } = await setup(dir, rand, ['--retain-points', '4']);
    const model = new Map<string, Buffer>();
    const order: string[] = [];
    for (let day = 5; day <= 17; day++) {
      await mutate(disk, content, rand);
      const r = await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: dayAt(day) });
      assert.equal(r.code, 0, r.stderr);
      const id = (JSON.parse(r.stdout) as { pointId: string }).pointId;
      model.set(id, Buffer.from(content.data));
      order.push(id);
      const list = await points(repo);
      // Forward rule inside a chain (an increment needs its full), rollbacks trimmed to the policy.
      for (const id2 of order.slice(-4))
        assert.ok(
          list.some((p) => p.id === id2),
          `day ${day}: a retained point is missing`,
        );
      for (const p of list) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `day ${day}: point ${p.id} restores wrong bytes`);
      if (day >= 8) assert.ok(list.filter((p) => p.kind === 'rollback').length <= 3, `day ${day}: rollbacks beyond the policy remain`);
    }
  } finally {
    await cleanup();
  }
});

test(
  'crash: kill -9 at moments spread over an increment + synthetic full + transform + retention loses no point; the next run finishes the job',
  { timeout: 10 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(73);
      const retain = 8;
      const { repo, disk, content } = await setup(dir, rand, ['--retain-points', String(retain)]);
      const model = new Map<string, Buffer>();
      let day = 5;
      let hour = 1;
      const run = async (crashAt?: number): Promise<{ killed: boolean; steps: number }> => {
        const report = join(dir, 'steps');
        await writeFile(report, '0');
        hour += 1;
        const r = await cli(['backup', 'vm', '--repo', repo], {
          LIFEBOAT_NOW: dayAt(day, hour),
          LIFEBOAT_CRASH_REPORT: report,
          ...(crashAt ? { LIFEBOAT_CRASH_AT: String(crashAt) } : {}),
        });
        if (r.signal === 'SIGKILL') return { killed: true, steps: 0 };
        assert.equal(r.code, 0, r.stderr);
        return { killed: false, steps: Number(await readFile(report, 'utf8')) };
      };
      const record = async (): Promise<void> => {
        for (const p of await points(repo)) if (!model.has(p.id)) model.set(p.id, Buffer.from(content.data)); // the run's own point
      };
      /** Points retention may take in the next run: all but the newest retain-1 (the run adds one). */
      const due = (): Set<string> => new Set([...model.keys()].slice(0, Math.max(0, model.size - (retain - 1))));
      /** A week: three increments on Monday, then Thursday's run (increment, synthetic full, transform, retention). */
      const week = async (crashAt?: number, beforeThursday?: () => void): Promise<{ killed: boolean; steps: number }> => {
        day += day === 5 ? 0 : 4;
        hour = 1;
        for (let i = 0; i < 3; i++) {
          await mutate(disk, content, rand);
          const mayGo = due();
          await run();
          await record();
          await prune(repo, model, 'a Monday run', mayGo);
        }
        day += 3;
        await mutate(disk, content, rand);
        beforeThursday?.();
        return run(crashAt);
      };
      const probe = await week();
      await record();
      assert.ok(probe.steps > 20, `a transforming run counted ${probe.steps} steps`);
      let kills = 0;
      const n = Math.min(16, probe.steps);
      const moments = [...new Set(Array.from({ length: n }, (_, i) => 1 + Math.floor((i * probe.steps) / n)))];
      for (const at of moments) {
        let mayGo = new Set<string>();
        const r = await week(at, () => (mayGo = due()));
        if (r.killed) kills += 1;
        await record();
        await checkAll(repo, model, `killed at step ${at}`, mayGo);
        await mutate(disk, content, rand);
        const mayGoNext = due();
        await run();
        await record();
        const list = await checkAll(repo, model, `run after the kill at step ${at}`, mayGoNext);
        assert.equal(list.filter((p) => p.kind === 'full').length, 1, `after the kill at step ${at}: the transform was finished`);
        assert.ok(list.length <= retain, `after the kill at step ${at}: ${list.length} points kept`);
      }
      assert.ok(kills >= moments.length - 2, `only ${kills} kills at ${moments.length} moments`);
    } finally {
      await cleanup();
    }
  },
);
