import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { availablePoints, cli, randomBytes, readPoint, rng, tempDir, writeAt } from './helpers.js';

const BS = 256 * 1024;
const DAY = 86_400_000;

interface CreatedJob {
  method: string;
  activeFullDays: string[];
  syntheticFullDays?: string[];
  warnings: string[];
}

async function createJson(args: string[]): Promise<{ job: CreatedJob; stderr: string }> {
  const r = await cli(['job', 'create', ...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return { job: JSON.parse(r.stdout) as CreatedJob, stderr: r.stderr };
}

/**
 * Defaults give bounded storage (issue 13, item 3): `job create … --retain-points 4`
 * with no --method and no full day used to make a forward chain that kept every
 * point. Now it is forever forward, and after seven daily runs four points remain,
 * each bit-exact.
 */
test('job create with no --method and no full day: forever forward, and --retain-points 4 keeps 4 points after 7 runs', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(1303);
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    const content = randomBytes(rand, 2 * BS + 777);
    await writeFile(disk, content);
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
    const { job, stderr } = await createJson(['vm', '--repo', repo, '--disk', disk, '--retain-points', '4']);
    assert.equal(job.method, 'forever');
    assert.deepEqual(job.warnings, []);
    assert.doesNotMatch(stderr, /warning/);
    const model = new Map<string, Buffer>();
    const day0 = Date.parse('2026-04-06T22:00:00Z');
    for (let day = 0; day < 7; day++) {
      const chunk = randomBytes(rand, 3000);
      const off = Math.floor(rand() * (content.length - chunk.length));
      chunk.copy(content, off);
      await writeAt(disk, chunk, off);
      const r = await cli(['backup', 'vm', '--repo', repo, '--json'], { LIFEBOAT_NOW: new Date(day0 + day * DAY).toISOString() });
      assert.equal(r.code, 0, r.stderr);
      model.set((JSON.parse(r.stdout) as { pointId: string }).pointId, Buffer.from(content));
    }
    const points = await availablePoints(repo);
    assert.equal(points.length, 4, `points: ${points.map((p) => p.id).join(', ')}`);
    for (const p of points) assert.ok((await readPoint(repo, 'vm', p.id)).equals(model.get(p.id)!), `point ${p.id} differs`);
  } finally {
    await cleanup();
  }
});

test('job create: a full day scheduled and no --method is forward; --method forward with no full day warns (stderr and --json warnings)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, Buffer.alloc(BS));
    assert.equal((await cli(['repo', 'init', repo])).code, 0);

    const synthetic = await createJson(['syn', '--repo', repo, '--disk', disk, '--synthetic-full', 'sat']);
    assert.equal(synthetic.job.method, 'forward');
    assert.deepEqual(synthetic.job.warnings, []);
    const active = await createJson(['act', '--repo', repo, '--disk', disk, '--active-full', 'mon']);
    assert.equal(active.job.method, 'forward');
    assert.deepEqual(active.job.warnings, []);
    // GFS makes a synthetic full each period when no full day is scheduled, so this job prunes too.
    const gfs = await createJson(['gfs', '--repo', repo, '--disk', disk, '--method', 'forward', '--gfs', 'weekly=2']);
    assert.deepEqual(gfs.job.warnings, []);

    const never = await createJson(['never', '--repo', repo, '--disk', disk, '--method', 'forward', '--retain-points', '4']);
    assert.equal(never.job.method, 'forward');
    assert.equal(never.job.warnings.length, 1);
    assert.match(never.job.warnings[0]!, /can never delete anything/);
    assert.match(never.stderr, /warning: retention can never delete anything/);
    // Human output warns on stderr too.
    const human = await cli(['job', 'create', 'never2', '--repo', repo, '--disk', disk, '--method', 'forward']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /created job never2/);
    assert.match(human.stderr, /warning: retention can never delete anything/);
  } finally {
    await cleanup();
  }
});
