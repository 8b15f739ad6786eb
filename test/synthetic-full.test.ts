import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { availablePoints, cli, randomBytes, readPoint, rng, tempDir, scatterWrites, type ListedPoint } from './helpers.js';

type Point = ListedPoint;

const dayAt = (day: number): string => new Date(Date.UTC(2026, 0, day, 20)).toISOString(); // Jan 2026: the 5th is a Monday

async function setup(dir: string, rand: () => number, syntheticDays: string): Promise<{ repo: string; disk: string; content: Buffer }> {
  const repo = join(dir, 'repo');
  const disk = join(dir, 'disk.img');
  const content = randomBytes(rand, 24 * 256 * 1024 + 777);
  await writeFile(disk, content);
  assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
  const j = await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--retain-points', '1000', '--synthetic-full', syntheticDays]);
  assert.equal(j.code, 0, j.stderr);
  return { repo, disk, content };
}

const mutate = (disk: string, content: Buffer, rand: () => number): Promise<void> => scatterWrites(disk, content, rand, 3, 50_000);

const points = (repo: string): Promise<Point[]> => availablePoints(repo);

test(
  'synthetic full on its weekday: the increment becomes a new full built from the chain, later increments build on it',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(41);
      const { repo, disk, content } = await setup(dir, rand, 'thu');
      assert.equal((await cli(['job', 'create', 'ff', '--repo', repo, '--disk', disk, '--method', 'forever', '--synthetic-full', 'thu'])).code, 2);
      const model = new Map<string, Buffer>();
      for (let day = 5; day <= 16; day++) {
        await mutate(disk, content, rand);
        const r = await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: dayAt(day) });
        assert.equal(r.code, 0, r.stderr);
        const res = JSON.parse(r.stdout) as { pointId: string; synthetic?: { file: string; blocksCopied: number } };
        model.set(res.pointId, Buffer.from(content));
        const thursday = day === 8 || day === 15;
        assert.equal(res.synthetic !== undefined, thursday, `day ${day}: synthetic full ${thursday ? 'expected' : 'unexpected'}`);
        const list = await points(repo);
        const p = list.find((x) => x.id === res.pointId)!;
        if (thursday) {
          assert.equal(p.kind, 'full');
          assert.match(p.file, /\.vbk$/);
          assert.ok(res.synthetic!.blocksCopied > 0);
          // A second run the same day is a plain increment.
          await mutate(disk, content, rand);
          const again = JSON.parse((await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: dayAt(day).replace('T20', 'T21') })).stdout) as {
            pointId: string;
            synthetic?: unknown;
            kind: string;
          };
          assert.equal(again.synthetic, undefined);
          assert.equal(again.kind, 'increment');
          model.set(again.pointId, Buffer.from(content));
          const after = await points(repo);
          assert.equal(after.find((x) => x.id === again.pointId)!.chainId, p.chainId, 'the increment builds on the synthetic full');
        } else if (day > 5) assert.equal(p.kind, 'increment');
      }
      const list = await points(repo);
      assert.equal(list.length, model.size, 'every point is still there');
      assert.equal(list.filter((p) => p.kind === 'full').length, 3);
      const files = await readdir(join(repo, 'jobs', 'vm'));
      assert.equal(files.filter((f) => f.endsWith('.vib')).length, model.size - 3, 'the synthesized increments are gone');
      for (const p of list) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `point ${p.id} restores wrong bytes`);
      assert.equal((await cli(['verify', 'vm', '--repo', repo, '--all'])).code, 0);
    } finally {
      await cleanup();
    }
  },
);

test(
  'crash: kill -9 at moments spread over every step of an increment + synthetic full loses no point; the next run succeeds',
  { timeout: 10 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(43);
      const { repo, disk, content } = await setup(dir, rand, 'mon,tue,wed,thu,fri,sat,sun');
      const model = new Map<string, Buffer>();
      let day = 5;
      const run = async (crashAt?: number): Promise<{ killed: boolean; steps: number }> => {
        const report = join(dir, 'steps');
        await writeFile(report, '0');
        const r = await cli(['backup', 'vm', '--repo', repo], {
          LIFEBOAT_NOW: dayAt(day),
          LIFEBOAT_CRASH_REPORT: report,
          ...(crashAt ? { LIFEBOAT_CRASH_AT: String(crashAt) } : {}),
        });
        if (r.signal === 'SIGKILL') return { killed: true, steps: 0 };
        assert.equal(r.code, 0, r.stderr);
        return { killed: false, steps: Number(await readFile(report, 'utf8')) };
      };
      const check = async (where: string): Promise<void> => {
        const list = await points(repo);
        for (const id of model.keys())
          assert.ok(
            list.some((p) => p.id === id),
            `${where}: point ${id} was lost`,
          );
        for (const p of list) {
          const want = model.get(p.id) ?? content; // the killed run may have completed its point
          assert.ok((await readPoint(repo, 'vm', p.id)).equals(want), `${where}: point ${p.id} restores wrong bytes`);
          model.set(p.id, Buffer.from(want));
        }
        const v = await cli(['verify', 'vm', '--repo', repo, '--all']);
        assert.equal(v.code, 0, `${where}: ${v.stdout}${v.stderr}`);
      };
      await run();
      model.set((await points(repo))[0]!.id, Buffer.from(content));
      day += 1;
      await mutate(disk, content, rand);
      const probe = await run();
      assert.ok(probe.steps > 10, `a synthetic run counted ${probe.steps} steps`);
      const list = await points(repo);
      model.set(list[list.length - 1]!.id, Buffer.from(content));
      let kills = 0;
      // Up to 16 moments spread evenly over the run's steps (points accumulate: checks grow with them).
      const moments = [...new Set(Array.from({ length: Math.min(16, probe.steps) }, (_, i) => 1 + Math.floor((i * probe.steps) / Math.min(16, probe.steps))))];
      for (const at of moments) {
        day += 1;
        await mutate(disk, content, rand);
        const r = await run(at);
        if (r.killed) kills += 1;
        await check(`killed at step ${at}`);
        // The next run, the same day or the next, succeeds and is exact.
        await mutate(disk, content, rand);
        await run();
        const l = await points(repo);
        model.set(l[l.length - 1]!.id, Buffer.from(content));
        await check(`run after the kill at step ${at}`);
      }
      assert.ok(kills >= moments.length - 2, `only ${kills} kills at ${moments.length} moments`);
    } finally {
      await cleanup();
    }
  },
);
