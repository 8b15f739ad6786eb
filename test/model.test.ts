import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { fixedClock } from '../src/core/clock.js';
import { LifeboatService } from '../src/app/index.js';
import { parseCompression } from '../src/compress/codec.js';
import { Repository } from '../src/repository/repository.js';
import { randomBytes, readPoint, rng, tempDir, writeAt } from './helpers.js';

const BS = 256 * 1024;

/**
 * Model test: random disks, random writes between runs, random sequences of
 * backup / active full (and the merges forever-forward retention triggers).
 * After every run, every point the repository lists must read back exactly
 * the bytes its disks had at that run, and retention must hold.
 */
// Seeds 55 and 68 keep days instead of points; 42 also makes synthetic fulls on Saturdays;
// 79 and 97 keep GFS fulls over four simulated months; 83 transforms its chains into rollbacks.
const SEEDS = [11, 24, 37, 42, 55, 68, 79, 83, 97];
// Encrypted repositories (repo init --encrypt): a forever-forward and a reverse-incremental seed (lz4) again, sealed.
const ENCRYPTED = new Set([24, 37]);
const CASES = [
  ...SEEDS.map((seed, i) => ({ seed, i, encrypted: false })),
  ...SEEDS.flatMap((seed, i) => (ENCRYPTED.has(seed) ? [{ seed, i, encrypted: true }] : [])),
];
for (const { seed, i, encrypted } of CASES) {
  const method = seed === 83 ? 'forward' : seed === 97 ? 'forever' : (['forward', 'forever', 'reverse'] as const)[i % 3]!;
  const byDays = i === 4 || i === 5;
  const gfs = seed === 79 || seed === 97 ? { weekly: 3, monthly: 2, yearly: 0 } : undefined;
  const transform = seed === 83;
  const label = [method, byDays ? 'retention by days' : '', gfs ? 'GFS over four months' : '', transform ? 'synthetic fulls transformed into rollbacks' : '']
    .concat(encrypted ? ['encrypted repository'] : [])
    .filter((x) => x !== '')
    .join(', ');
  test(`model: random runs, seed ${seed}, ${label}`, async () => {
    const rand = rng(seed);
    const { dir, cleanup } = await tempDir();
    try {
      const retain = 2 + Math.floor(rand() * 4);
      const diskCount = 1 + Math.floor(rand() * 2);
      const disks: { path: string; data: Buffer }[] = [];
      for (let d = 0; d < diskCount; d++) {
        // Sizes that are not multiples of the block size.
        const size = BS * (4 + Math.floor(rand() * 8)) + Math.floor(rand() * BS);
        const data = Buffer.alloc(size);
        randomBytes(rand, Math.floor(size / 3)).copy(data, Math.floor(rand() * (size / 2)));
        const path = join(dir, `disk${d}.img`);
        await writeFile(path, data);
        disks.push({ path, data });
      }
      const repo = join(dir, 'repo');
      const day0 = Date.parse('2026-01-05T10:00:00Z');
      let svc = new LifeboatService(fixedClock(new Date(day0)));
      const compression = parseCompression(seed === 37 ? 'lz4' : 'zstd:1');
      // An encrypted repository's keys stay in this process's keyring: every later open finds them.
      if (encrypted) await Repository.init(repo, { blockSize: BS, compression, now: new Date(day0), encrypt: { password: `model ${seed}`, recovery: false } });
      else await svc.initRepository(repo, BS, compression);
      // One run a day: keeping N days keeps N+1 points (today counts), and never fewer than 3.
      await svc.createJob(repo, {
        name: 'vm',
        disks: disks.map((d) => d.path),
        method,
        retainPoints: retain,
        ...(byDays ? { retainDays: retain - 1 } : {}),
        activeFullDays: gfs ? ['mon'] : i >= 2 && !transform ? ['wed'] : [],
        ...(seed === 42 || transform ? { syntheticFullDays: ['sat' as const] } : {}),
        ...(transform ? { transformToRollbacks: true } : {}),
        ...(gfs ? { gfs } : {}),
      });
      const maxKept = byDays ? Math.max(retain, 3) : retain;

      const expected = new Map<string, Buffer[]>();
      const runs = gfs ? 120 : 22;
      for (let run = 0; run < runs; run++) {
        svc = new LifeboatService(fixedClock(new Date(day0 + run * 86_400_000)));
        // Mutate like a guest: scattered writes, zeroed ranges, duplicated blocks, growth.
        for (const disk of disks) {
          const ops = Math.floor(rand() * 5);
          for (let o = 0; o < ops; o++) {
            const kind = rand();
            const len = 1 + Math.floor(rand() * BS * 1.5);
            const off = Math.floor(rand() * Math.max(1, disk.data.length - len));
            const chunk = kind < 0.2 ? Buffer.alloc(len) : kind < 0.3 ? disk.data.subarray(0, Math.min(len, disk.data.length)) : randomBytes(rand, len);
            const copy = Buffer.from(chunk);
            copy.copy(disk.data, off);
            await writeAt(disk.path, copy, off);
          }
          if (rand() < 0.08) {
            const grown = Buffer.alloc(disk.data.length + Math.floor(rand() * BS * 2));
            disk.data.copy(grown);
            disk.data = grown;
            await truncate(disk.path, grown.length);
          }
        }
        // Active fulls come from the schedule alone where the test counts chains.
        const activeFull = !gfs && !transform && rand() < 0.12;
        const r = await svc.backup(repo, 'vm', { activeFull });
        expected.set(
          r.pointId,
          disks.map((d) => Buffer.from(d.data)),
        );

        const { points, state } = await svc.points(repo, 'vm');
        assert.equal(state.damaged.length, 0, 'no damaged files');
        assert.equal(state.orphans.length, 0, 'no orphans');
        assert.equal(points[points.length - 1]!.id, r.pointId, 'the new point is the latest');
        // The newest `retain` points must all exist.
        const made = [...expected.keys()];
        const mustHave = made.slice(Math.max(0, made.length - retain));
        for (const id of mustHave)
          assert.ok(
            points.some((p) => p.id === id),
            `run ${run}: retained point ${id} missing`,
          );
        if (method !== 'forward' && !gfs && state.chains.length === 1)
          assert.ok(points.length <= maxKept, `${method} keeps at most ${maxKept} points (has ${points.length})`);
        // What remains is what the planner promised: nothing left to do, and a reason for every point.
        const plan = await svc.retentionPlan(repo, 'vm');
        assert.deepEqual(plan.actions, [], `run ${run}: retention left work undone`);
        assert.deepEqual(plan.kept.map((k) => k.id).sort(), points.map((p) => p.id).sort(), `run ${run}: kept points differ from the plan`);
        if (transform) assert.ok(state.chains.length === 1 && state.chains[0]!.increments.length <= 6, `run ${run}: one chain, transformed weekly`);
        if (gfs) {
          // Flagged fulls outlive short-term retention, for their periods only.
          const fulls = state.chains.map((c) => c.full.root.pointId);
          assert.ok(fulls.length <= 1 + gfs.weekly + gfs.monthly + 1, `run ${run}: ${fulls.length} fulls kept`);
        }
        for (const c of gfs ? [] : state.chains.slice(0, -1)) {
          const newest = c.increments.length ? c.increments[c.increments.length - 1]! : c.full;
          assert.ok(mustHave.includes(newest.root.pointId), 'an older chain survives only while its newest point is retained');
        }
        for (const p of points) {
          const want = expected.get(p.id);
          assert.ok(want, `unknown point ${p.id}`);
          for (let d = 0; d < diskCount; d++) {
            const got = await readPoint(repo, 'vm', p.id, String(d));
            assert.equal(got.length, want[d]!.length, `run ${run} point ${p.id} disk ${d} size`);
            assert.ok(got.equals(want[d]!), `run ${run} point ${p.id} (${p.kind}) disk ${d} differs`);
          }
        }
      }
    } finally {
      await cleanup();
    }
  });
}
