import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, randomBytes, readPoint, rng, scatterWrites, tempDir, writeAt } from './helpers.js';

interface Point {
  id: string;
  kind: string;
  file: string;
  available: boolean;
}

const BS = 256 * 1024;

async function points(repo: string, job = 'vm'): Promise<Point[]> {
  return (JSON.parse((await cli(['points', job, '--repo', repo, '--json'])).stdout) as Point[]).filter((p) => p.available);
}

/** Changes like a guest's: rewritten ranges, a block zeroed, a zero block filled. */
async function mutate(disk: string, content: Buffer, rand: () => number): Promise<void> {
  await scatterWrites(disk, content, rand, 3, 60_000);
  const bi = Math.floor(rand() * Math.floor(content.length / BS));
  const z = rand() < 0.5 ? Buffer.alloc(BS) : randomBytes(rand, BS);
  z.copy(content, bi * BS);
  await writeAt(disk, z, bi * BS);
}

test(
  'reverse incremental: the full always holds the newest point, rollbacks take it back; every point bit-exact; retention drops the oldest rollback',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(51);
      const repo = join(dir, 'repo');
      const disk = join(dir, 'disk.img');
      const content = randomBytes(rand, 20 * BS + 4321);
      Buffer.alloc(3 * BS).copy(content, 5 * BS); // zero blocks to start with
      await writeFile(disk, content);
      assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
      const j = await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'reverse', '--retain-points', '5']);
      assert.equal(j.code, 0, j.stderr);
      const model = new Map<string, Buffer>();
      for (let run = 0; run < 9; run++) {
        if (run > 0) await mutate(disk, content, rand);
        const r = await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: new Date(Date.UTC(2026, 1, 1 + run, 20)).toISOString() });
        assert.equal(r.code, 0, r.stderr);
        const res = JSON.parse(r.stdout) as { pointId: string; kind: string };
        model.set(res.pointId, Buffer.from(content));
        const list = await points(repo);
        assert.equal(list[list.length - 1]!.id, res.pointId, 'the newest point is the last');
        assert.equal(list[list.length - 1]!.kind, 'full', 'the full holds the newest point');
        assert.ok(list.slice(0, -1).every((p) => p.kind === 'rollback' && p.file.endsWith('.vrb')));
        assert.equal(list.length, Math.min(run + 1, 5), `run ${run}: retention keeps 5 points`);
        for (const p of list) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `run ${run}: point ${p.id} restores wrong bytes`);
      }
      const files = await readdir(join(repo, 'jobs', 'vm'));
      assert.equal(files.filter((f) => f.endsWith('.vbk')).length, 1);
      assert.equal(files.filter((f) => f.endsWith('.vrb')).length, 4);
      assert.equal((await cli(['verify', 'vm', '--repo', repo, '--all'])).code, 0);
      // An active full starts a new chain; the old one goes whole once its newest point expires.
      await mutate(disk, content, rand);
      const af = await cli(['backup', 'vm', '--repo', repo, '--active-full', '--json'], { LIFEBOAT_NOW: '2026-02-20T20:00:00Z' });
      assert.equal(af.code, 0, af.stderr);
      model.set((JSON.parse(af.stdout) as { pointId: string }).pointId, Buffer.from(content));
      const list = await points(repo);
      for (const p of list) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `after active full: point ${p.id} restores wrong bytes`);
    } finally {
      await cleanup();
    }
  },
);

test('crash: kill -9 at every durable step of a reverse-incremental run loses no point; the next run succeeds', { timeout: 10 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(53);
    const repo = join(dir, 'repo');
    const disk = join(dir, 'disk.img');
    const content = randomBytes(rand, 16 * BS + 99);
    await writeFile(disk, content);
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'reverse', '--retain-points', '4'])).code, 0);
    const model = new Map<string, Buffer>();
    const run = async (crashAt?: number): Promise<{ killed: boolean; steps: number }> => {
      const report = join(dir, 'steps');
      await writeFile(report, '0');
      const r = await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_CRASH_REPORT: report, ...(crashAt ? { LIFEBOAT_CRASH_AT: String(crashAt) } : {}) });
      if (r.signal === 'SIGKILL') return { killed: true, steps: 0 };
      assert.equal(r.code, 0, r.stderr);
      return { killed: false, steps: Number(await readFile(report, 'utf8')) };
    };
    // After a clean run: its point is the current content; what retention dropped is gone on purpose.
    const record = async (): Promise<void> => {
      const l = await points(repo);
      model.set(l[l.length - 1]!.id, Buffer.from(content));
      for (const id of [...model.keys()]) if (!l.some((p) => p.id === id)) model.delete(id);
    };
    const check = async (where: string, mayLoseOldest: boolean): Promise<void> => {
      const list = await points(repo);
      const oldest = [...model.keys()][0];
      for (const id of model.keys())
        if (!(mayLoseOldest && id === oldest))
          assert.ok(
            list.some((p) => p.id === id),
            `${where}: point ${id} was lost`,
          );
      for (const p of list) {
        const want = model.get(p.id) ?? content;
        assert.ok((await readPoint(repo, 'vm', p.id)).equals(want), `${where}: point ${p.id} restores wrong bytes`);
      }
      for (const id of [...model.keys()]) if (!list.some((p) => p.id === id)) model.delete(id);
      for (const p of list) if (!model.has(p.id)) model.set(p.id, Buffer.from(content));
      const v = await cli(['verify', 'vm', '--repo', repo, '--all']);
      assert.equal(v.code, 0, `${where}: ${v.stdout}${v.stderr}`);
    };
    await run();
    await record();
    for (let k = 0; k < 4; k++) {
      await mutate(disk, content, rand);
      await run();
      await record();
    }
    await mutate(disk, content, rand);
    const probe = await run();
    await record();
    assert.ok(probe.steps > 8, `a reverse run counted ${probe.steps} steps`);
    let kills = 0;
    for (let at = 1; at <= probe.steps; at++) {
      await mutate(disk, content, rand);
      const r = await run(at);
      if (r.killed) kills += 1;
      // Retention may drop the oldest rollback at the end of a run that completed its point.
      await check(`killed at step ${at}`, true);
      await mutate(disk, content, rand);
      await run();
      await record();
      await check(`run after the kill at step ${at}`, true);
    }
    assert.ok(kills >= probe.steps - 2, `only ${kills} kills in ${probe.steps} steps`);
  } finally {
    await cleanup();
  }
});
