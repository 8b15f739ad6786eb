// `lifeboat catalog rebuild`: the catalog's jobs and points remade from the repository's files; runs kept.
// No root, QEMU or listening ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCatalog, type Catalog } from '../src/catalog/index.js';
import { cli, MiB, rng, tempDir, writeAt, writeRawDisk, type CliResult } from './helpers.js';

function ok(r: CliResult): string {
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function run(args: string[]): Promise<string> {
  return ok(await cli(args));
}

async function withCatalog<T>(spec: string, fn: (c: Catalog) => Promise<T>): Promise<T> {
  const catalog = await openCatalog(spec);
  try {
    return await fn(catalog);
  } finally {
    await catalog.close();
  }
}

interface Listed {
  id: string;
  kind: string;
  file: string;
  chainId: string;
}

/** What the catalog must hold for a job's points: read from the repository by `points --json` and the files' sizes. */
async function expectedPoints(repo: string, job: string): Promise<object[]> {
  const listed = JSON.parse(await run(['points', job, '--repo', repo, '--json'])) as Listed[];
  return Promise.all(
    listed.map(async (p) => ({
      pointId: p.id,
      kind: p.kind,
      file: p.file,
      chainId: p.chainId,
      storedBytes: (await stat(join(repo, 'jobs', job, p.file))).size,
    })),
  );
}

test('catalog rebuild records exactly the repository’s jobs and points, forgets deleted jobs, keeps runs', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(14);
    const repo = join(dir, 'repo');
    const state = join(dir, 'state');
    await mkdir(state);
    await writeRawDisk(join(dir, 'web.img'), rand, 4, [0, 2], 300_000);
    await writeRawDisk(join(dir, 'db.img'), rand, 2, [1], 100_000);
    await run(['repo', 'init', repo]);
    await run(['job', 'create', 'web', '--repo', repo, '--disk', join(dir, 'web.img')]);
    await run(['job', 'create', 'db', '--repo', repo, '--disk', join(dir, 'db.img')]);
    await run(['backup', 'web', '--repo', repo]);
    await writeAt(join(dir, 'web.img'), Buffer.alloc(70_000, 7), 3 * MiB);
    await run(['backup', 'web', '--repo', repo]);
    await run(['backup', 'db', '--repo', repo]);

    const first = JSON.parse(await run(['catalog', 'rebuild', '--repo', repo, '--state-dir', state, '--json'])) as Record<string, unknown>;
    assert.deepEqual(first, { repo, jobs: 2, points: 3, removed: [] });

    const webPoints = await expectedPoints(repo, 'web');
    const dbPoints = await expectedPoints(repo, 'db');
    const jobIds = async (job: string): Promise<string> => (JSON.parse(await run(['job', 'show', job, '--repo', repo, '--json'])) as { jobId: string }).jobId;
    await withCatalog(state, async (c) => {
      const jobs = await c.listJobs(repo);
      assert.deepEqual(
        jobs.map((j) => [j.name, j.jobId, j.definition['name']]),
        [
          ['db', await jobIds('db'), 'db'],
          ['web', await jobIds('web'), 'web'],
        ],
      );
      const web = await c.listPoints(repo, 'web');
      assert.deepEqual(
        web.map((p) => ({ pointId: p.pointId, kind: p.kind, file: p.file, chainId: p.chainId, storedBytes: p.storedBytes })),
        webPoints,
      );
      // The full read every block, the increment compared hashes (a raw file has no change tracking).
      assert.deepEqual(
        web.map((p) => [p.kind, p.changeMethod, p.diskBytes, p.health, p.seq]),
        [
          ['full', 'full', 4 * MiB, 'ok', 1],
          ['increment', 'hash', 4 * MiB, 'ok', 2],
        ],
      );
      const db = await c.listPoints(repo, 'db');
      assert.deepEqual(
        db.map((p) => ({ pointId: p.pointId, kind: p.kind, file: p.file, chainId: p.chainId, storedBytes: p.storedBytes })),
        dbPoints,
      );
      assert.deepEqual(
        db.map((p) => [p.changeMethod, p.diskBytes]),
        [['full', 2 * MiB]],
      );
      // History the rebuild must keep, and a job the catalog saw that the repository never had (or lost).
      await c.createRun({ repo, job: 'web', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: '2026-12-01T00:00:00.000Z' });
      await c.putJob({ repo, name: 'gone', jobId: 'j-gone', definition: { name: 'gone' }, updatedAt: '2026-12-01T00:00:00.000Z' });
      await c.replacePoints(repo, 'gone', [{ ...web[0]!, job: 'gone' }]);
      // Another repository's jobs are not this rebuild's business.
      await c.putJob({ repo: '/elsewhere', name: 'web', jobId: 'j-other', definition: {}, updatedAt: '2026-12-01T00:00:00.000Z' });
    });

    await run(['job', 'delete', 'web', '--repo', repo, '--with-points']);
    const second = await run(['catalog', 'rebuild', '--repo', repo, '--state-dir', state]);
    assert.equal(second, `catalog of ${repo}: 1 job, 1 point recorded from the repository\nremoved 2 jobs the repository no longer has: gone, web\n`);
    await withCatalog(state, async (c) => {
      assert.deepEqual(
        (await c.listJobs()).map((j) => [j.repo, j.name]),
        [
          ['/elsewhere', 'web'],
          [repo, 'db'],
        ],
      );
      assert.deepEqual(await c.listPoints(repo, 'web'), []);
      assert.deepEqual(await c.listPoints(repo, 'gone'), []);
      assert.equal((await c.listPoints(repo, 'db')).length, 1);
      const runs = (await c.listRuns({ repo })).runs;
      assert.deepEqual(
        runs.map((r) => [r.job, r.trigger, r.state]),
        [['web', 'manual', 'queued']],
      );
    });
  } finally {
    await cleanup();
  }
});

test(
  'catalog rebuild: --catalog names the database; a job that cannot be read leaves the catalog as it was; bad flags refused',
  { timeout: 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const repo = join(dir, 'repo');
      await writeRawDisk(join(dir, 'a.img'), rng(7), 1, [0], 50_000);
      await run(['repo', 'init', repo]);
      await run(['job', 'create', 'a', '--repo', repo, '--disk', join(dir, 'a.img')]);
      await run(['job', 'create', 'b', '--repo', repo, '--disk', join(dir, 'a.img')]);
      await run(['backup', 'a', '--repo', repo]);

      const db = `sqlite:${join(dir, 'other.db')}`;
      assert.deepEqual(JSON.parse(await run(['catalog', 'rebuild', '--repo', repo, '--catalog', db, '--json'])), { repo, jobs: 2, points: 1, removed: [] });
      const before = await withCatalog(db, async (c) => ({ jobs: await c.listJobs(repo), points: await c.listPoints(repo, 'a') }));
      assert.deepEqual(
        before.jobs.map((j) => j.name),
        ['a', 'b'],
      );

      // job a's definition damaged: the rebuild fails with its code and writes nothing (b is not forgotten, a's points stay).
      await writeFile(join(repo, 'jobs', 'a', 'job.json'), '{"not": "a job"');
      const failed = await cli(['catalog', 'rebuild', '--repo', repo, '--catalog', db]);
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /\[LFB_ERR_[A-Z_]+\]/);
      assert.deepEqual(await withCatalog(db, async (c) => ({ jobs: await c.listJobs(repo), points: await c.listPoints(repo, 'a') })), before);

      const both = await cli(['catalog', 'rebuild', '--repo', repo, '--catalog', db, '--state-dir', dir]);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /--catalog and --state-dir exclude each other.*\[LFB_ERR_USAGE\]/s);
      // A state folder that does not exist is a mistake, not a new empty catalog.
      const missing = await cli(['catalog', 'rebuild', '--repo', repo, '--state-dir', join(dir, 'nope')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /no state folder .*\[LFB_ERR_INVALID_ARGUMENT\]/s);
      const notRepo = await cli(['catalog', 'rebuild', '--repo', join(dir, 'nope'), '--catalog', db]);
      assert.notEqual(notRepo.code, 0);
      assert.match(notRepo.stderr, /not a Lifeboat repository/);
      // A repository on S3 has no catalog of its own yet (serve refuses it too): said so, not looked for as a folder named s3:.
      const onS3 = await cli(['catalog', 'rebuild', '--repo', 's3://bucket/repo', '--catalog', db]);
      assert.notEqual(onS3.code, 0);
      assert.match(onS3.stderr, /s3:\/\/bucket\/repo is on object storage.*\[LFB_ERR_STORE_UNSUPPORTED\]/s);
      assert.doesNotMatch(onS3.stderr, /s3:\/bucket/);
    } finally {
      await cleanup();
    }
  },
);
