import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, cli, randomBytes, readPoint, rng, serviceAt, tempDir, writeAt } from './helpers.js';

const BS = 256 * 1024;

/**
 * Crash test: kill -9 the backup process at many moments spread over a full,
 * an increment and a forever-forward merge. LIFEBOAT_CRASH_AT=N makes the
 * process SIGKILL itself at its N-th durable step (write, fsync, rename,
 * unlink), so every moment between two steps is reached; a second set of
 * kills comes from outside at random times. After each kill: every point
 * complete before restores bit-exact, and the next backup succeeds.
 */
test('crash: kill -9 at ≥ 50 moments of full, increment and merge loses no restore point', { timeout: 20 * 60_000 }, async (t) => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(7);
  try {
    const repo = join(dir, 'repo');
    const diskA = join(dir, 'a.img');
    const diskB = join(dir, 'b.img');
    const size = 24 * BS + 12345;
    const contents = new Map<string, Buffer>([
      [diskA, randomBytes(rand, size)],
      [diskB, randomBytes(rand, size)],
    ]);
    for (const [p, b] of contents) await writeFile(p, b);
    const env = { LIFEBOAT_NOW: '2026-03-04T10:00:00Z' };
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'], env)).code, 0);
    // Job "fwd" never deletes (large retention): its runs are pure fulls and increments.
    assert.equal((await cli(['job', 'create', 'fwd', '--repo', repo, '--disk', diskA, '--retain-points', '1000'], env)).code, 0);
    // Job "ffi" keeps 2 points: every increment is followed by a merge.
    assert.equal((await cli(['job', 'create', 'ffi', '--repo', repo, '--disk', diskB, '--method', 'forever', '--retain-points', '2'], env)).code, 0);

    const model = { fwd: new Map<string, Buffer>(), ffi: new Map<string, Buffer>() };
    const disks = { fwd: diskA, ffi: diskB };

    const mutate = async (job: 'fwd' | 'ffi'): Promise<void> => {
      const data = contents.get(disks[job])!;
      for (let i = 0; i < 3; i++) {
        const off = Math.floor(rand() * (data.length - 70_000));
        const chunk = i === 2 && rand() < 0.3 ? Buffer.alloc(BS) : randomBytes(rand, 70_000);
        chunk.copy(data, off);
        await writeAt(disks[job], chunk.subarray(0, Math.min(chunk.length, data.length - off)), off);
      }
    };

    /**
     * After a kill (`whole`): every point restores bit-exact and verify --all passes. After the clean run that
     * follows: no point is lost or damaged, and the points that run could write restore bit-exact (its new point;
     * every point of the forever-forward job, whose merge rewrites the full). The forward job's older points are
     * files no later run opens for writing, read whole after every kill: reading them again after each clean run
     * made this test quadratic in its ~100 points.
     */
    const verify = async (job: 'fwd' | 'ffi', allowedGone: Set<string>, where: string, whole = true): Promise<string[]> => {
      const { points, state } = await serviceAt('2026-03-04T10:00:00Z').points(repo, job);
      assert.deepEqual(state.damaged, [], `${where}: damaged files`);
      const listed = new Set(points.map((p) => p.id));
      for (const id of model[job].keys()) {
        if (!allowedGone.has(id)) assert.ok(listed.has(id), `${where}: point ${id} of ${job} was lost`);
      }
      const unknown: string[] = [];
      for (const [i, p] of points.entries()) {
        const want = model[job].get(p.id) ?? contents.get(disks[job])!; // a point the killed run completed holds the current disk
        if (!model[job].has(p.id)) unknown.push(p.id);
        if (!whole && job === 'fwd' && i < points.length - 1) continue;
        assert.ok((await readPoint(repo, job, p.id)).equals(want), `${where}: point ${p.id} of ${job} restores wrong bytes`);
      }
      if (!whole) return unknown;
      // The health check agrees: every stored block of every file checks out.
      const health = await cli(['verify', job, '--repo', repo, '--all'], env);
      assert.equal(health.code, 0, `${where}: verify --all: ${health.stdout}${health.stderr}`);
      return unknown;
    };

    const backup = async (job: 'fwd' | 'ffi', extra: string[], crashAt?: number): Promise<{ killed: boolean; steps: number }> => {
      const report = join(dir, 'steps');
      await writeFile(report, '0');
      const r = await cli(['backup', job, '--repo', repo, ...extra], {
        ...env,
        LIFEBOAT_CRASH_REPORT: report,
        ...(crashAt ? { LIFEBOAT_CRASH_AT: String(crashAt) } : {}),
      });
      if (r.signal === 'SIGKILL') return { killed: true, steps: 0 };
      assert.equal(r.code, 0, `backup ${job} failed: ${r.stderr}`);
      return { killed: false, steps: Number(await readFile(report, 'utf8')) };
    };

    const recordLatest = async (job: 'fwd' | 'ffi'): Promise<void> => {
      const { points } = await serviceAt('2026-03-04T10:00:00Z').points(repo, job);
      const latest = points[points.length - 1]!;
      model[job].set(latest.id, Buffer.from(contents.get(disks[job])!));
      for (const id of [...model[job].keys()]) if (!points.some((p) => p.id === id)) model[job].delete(id);
    };

    // Baselines, and how many durable steps each kind of run takes.
    await backup('fwd', []);
    await recordLatest('fwd');
    await mutate('fwd');
    await backup('ffi', []);
    await recordLatest('ffi');
    await mutate('ffi');
    await backup('ffi', []);
    await recordLatest('ffi');

    const phases: { name: string; job: 'fwd' | 'ffi'; args: string[] }[] = [
      { name: 'full', job: 'fwd', args: ['--active-full'] },
      { name: 'increment', job: 'fwd', args: [] },
      { name: 'increment+merge', job: 'ffi', args: [] },
    ];
    let kills = 0;
    const killsByPhase = new Map<string, number>();
    for (const phase of phases) {
      await mutate(phase.job);
      const probe = await backup(phase.job, phase.args);
      await recordLatest(phase.job);
      assert.ok(probe.steps > 5, `${phase.name}: counted ${probe.steps} steps`);
      // Every step of the run, up to 25 of them spread evenly; then a clean run.
      const moments = Array.from({ length: Math.min(25, probe.steps) }, (_, i) => 1 + Math.floor((i * probe.steps) / Math.min(25, probe.steps)));
      for (const at of moments) {
        await mutate(phase.job);
        const before = new Set(model[phase.job].keys());
        // A merge may remove the oldest point: that is the retention it performs.
        const oldest = [...before][0]!;
        const allowedGone = phase.job === 'ffi' ? new Set([oldest]) : new Set<string>();
        const r = await backup(phase.job, phase.args, at);
        if (r.killed) {
          kills += 1;
          killsByPhase.set(phase.name, (killsByPhase.get(phase.name) ?? 0) + 1);
        }
        const completed = await verify(phase.job, allowedGone, `${phase.name} killed at step ${at}`);
        for (const id of completed) model[phase.job].set(id, Buffer.from(contents.get(disks[phase.job])!));
        // The next run must succeed and be exact.
        await backup(phase.job, []);
        await recordLatest(phase.job);
        await verify(phase.job, new Set(), `${phase.name}: run after the kill at step ${at}`, false);
      }
    }

    // Kills from outside at random times during a larger full backup.
    const bigDisk = join(dir, 'big.img');
    await writeFile(bigDisk, randomBytes(rand, 48 << 20));
    assert.equal((await cli(['job', 'create', 'big', '--repo', repo, '--disk', bigDisk, '--retain-points', '1000'], env)).code, 0);
    await backup('big' as 'fwd', []);
    const bigFirst = await readPoint(repo, 'big', 'latest');
    for (let i = 0; i < 8; i++) {
      const delay = 150 + Math.floor(rand() * 600);
      const p = spawn(process.execPath, [BIN, 'backup', 'big', '--repo', repo, '--active-full'], { env: { ...process.env, ...env }, stdio: 'ignore' });
      const timer = setTimeout(() => p.kill('SIGKILL'), delay);
      const signal = await new Promise<NodeJS.Signals | null>((r) => p.on('close', (_c, s) => r(s)));
      clearTimeout(timer);
      if (signal === 'SIGKILL') kills += 1;
      const { points } = await serviceAt('2026-03-04T10:00:00Z').points(repo, 'big');
      for (const pt of points) assert.ok((await readPoint(repo, 'big', pt.id)).equals(bigFirst), `external kill ${i}: point ${pt.id}`);
    }
    assert.equal((await cli(['backup', 'big', '--repo', repo], env)).code, 0);

    for (const phase of phases) assert.ok((killsByPhase.get(phase.name) ?? 0) >= 15, `${phase.name}: ${killsByPhase.get(phase.name) ?? 0} kills`);
    t.diagnostic(`kills: ${kills} in all; by phase ${JSON.stringify(Object.fromEntries(killsByPhase))}; plus external random-time kills of a 48 MiB full`);
    assert.ok(kills >= 50, `only ${kills} kills`);
    // No temporary file survives the runs after the kills.
    const { state } = await serviceAt('2026-03-04T10:00:00Z').points(repo, 'fwd');
    assert.deepEqual(state.temporary, []);
  } finally {
    await cleanup();
  }
});
