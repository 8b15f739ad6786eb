// The jobs and points listings answer from the catalog, kept true to the
// backup files by each job folder's signature: an unchanged job's listing
// opens no backup file, and whatever changes the files without the server
// (a CLI backup, a file or a job deleted by hand, `job set`) shows at the next
// request. In process (fastify's inject), SQLite catalog, the CLI as a child
// process: no root, no QEMU, no listening port.
import assert from 'node:assert/strict';
import { appendFile, readdir, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CatalogFreshness, catalogFreshnessOf } from '../src/service/catalog-freshness.js';
import { usageSampler } from '../src/service/http/repositories.js';
import { FaultyStorage } from '../src/testing/faulty-storage.js';
import { OpenApiValidator, fill, makeFixture, type Fixture } from './http-api-fixture.js';
import { cli } from './helpers.js';

let fx: Fixture;
let doc: OpenApiValidator;
/** Every storage call of the server's job reads: the backup files it opened. */
let storage: FaultyStorage;
let reader: CatalogFreshness;

const BACKUP_FILE = /\.(vbk|vib|vrb)$/;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const backupFilesOpened = (): number => storage.calls.filter((c) => c.op === 'open' && BACKUP_FILE.test(c.path)).length;

interface PointView {
  id: string;
  health: string;
  storedBytes: number | null;
}
interface JobSummary {
  job: { name: string };
  points: number;
  damagedFiles: number;
  damagedPoints: number;
  unavailablePoints: number;
  storedBytes: number;
  nextRunAt: string | null;
  lastRun: { id: number; state: string; endedAt: string | null; errorCode: string | null } | null;
  lastPoint: { id: string; createdAt: string; ageSeconds: number } | null;
}

async function get(template: string, values: Record<string, string> = {}, query = ''): Promise<unknown> {
  const res = await fx.api.inject({ method: 'GET', url: fill(template, { repo: fx.repoName, ...values }) + query, headers: bearer(fx.tokens.viewer) });
  assert.equal(res.statusCode, 200, res.body);
  return doc.check('GET', template, res);
}
const points = async (job: string) => ((await get('/api/v1/repositories/{repo}/jobs/{job}/points', { job })) as { points: PointView[] }).points;
const jobs = async () => ((await get('/api/v1/repositories/{repo}/jobs')) as { jobs: JobSummary[] }).jobs;
const oneJob = async (job: string) => (await get('/api/v1/repositories/{repo}/jobs/{job}', { job })) as JobSummary;

async function createJob(name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const res = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs', { repo: fx.repoName }),
    headers: bearer(fx.tokens.admin),
    payload: { name, disks: [fx.source], ...extra },
  });
  assert.equal(res.statusCode, 201, res.body);
}

/** Longer than job-signature.ts's racy windows (on a file system with nanosecond times): files changed before it are trusted by their times. */
const quiet = () => new Promise((resolve) => setTimeout(resolve, 1100));

/** Sets a folder's modification time 300 ms ahead: a signature taken until then is racy. */
async function touchAhead(folder: string): Promise<void> {
  const ahead = new Date(Date.now() + 300);
  await utimes(folder, ahead, ahead);
}

/** A backup by `lifeboat backup` alone: the server hears nothing of it. */
async function cliBackup(job: string): Promise<void> {
  const r = await cli(['backup', job, '--repo', fx.repo]);
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  fx = await makeFixture();
  doc = await OpenApiValidator.fetch(fx.api);
  storage = new FaultyStorage();
  // The routes take the server's one reader: this one, reading through a storage that logs its calls.
  reader = catalogFreshnessOf(fx.deps, () => new CatalogFreshness({ catalog: fx.catalog, clock: fx.deps.clock, storage }));
});

after(async () => {
  await fx.close();
});

test('GETs of an unchanged job (points, the job, the jobs, the repositories) open no backup file and read no job; a change is read once', async () => {
  await createJob('web01');
  await cliBackup('web01');
  await cliBackup('web01');
  // Files changed within the last second may change again unseen by their times: reads of them are not trusted (job-signature.ts).
  await quiet();
  assert.equal((await points('web01')).length, 2);
  assert.ok(backupFilesOpened() > 0, 'the first listing read the job');
  const opened = backupFilesOpened();
  const reads = reader.jobReads;
  for (let i = 0; i < 3; i++) {
    assert.equal((await points('web01')).length, 2);
    assert.equal((await oneJob('web01')).points, 2);
    assert.equal((await jobs()).length, 1);
    const usage = (await get('/api/v1/repositories')) as { repositories: { jobs: { name: string; points: number }[] }[] };
    assert.deepEqual(
      usage.repositories[0]!.jobs.map((j) => [j.name, j.points]),
      [['web01', 2]],
    );
  }
  assert.equal(backupFilesOpened() - opened, 0, 'no backup file opened for an unchanged job');
  assert.equal(reader.jobReads, reads, 'no job read again');

  // Requests that find one change share one read of the job (the files quiet: a read of them is final).
  await cliBackup('web01');
  await quiet();
  const all = await Promise.all([points('web01'), points('web01'), oneJob('web01'), jobs(), points('web01')]);
  assert.equal(reader.jobReads, reads + 1, 'one read for five requests');
  assert.equal((all[0] as PointView[]).length, 3);
  assert.equal((all[2] as JobSummary).points, 3);

  // A read of files changed a moment before is recorded as racy: once they have been quiet, one more read, then none.
  await cliBackup('web01');
  await points('web01');
  assert.equal(reader.jobReads, reads + 2);
  const [read] = await fx.catalog.listJobReads(fx.repo);
  const racy = read!.signature.startsWith('racy-');
  await quiet();
  await points('web01');
  assert.equal(reader.jobReads, reads + (racy ? 3 : 2), racy ? 'a racy read is read again' : 'a settled read stays');
  await Promise.all([points('web01'), jobs(), oneJob('web01')]);
  assert.equal(reader.jobReads, reads + (racy ? 3 : 2));
});

test("GET /jobs lists every repository's jobs as GET /repositories/{repo}/jobs does", async () => {
  const all = ((await get('/api/v1/jobs')) as { jobs: (JobSummary & { repo: string })[] }).jobs;
  const one = (await jobs()) as (JobSummary & { repo: string })[];
  assert.ok(one.length > 0);
  assert.deepEqual(
    all.map((j) => [j.repo, j.job.name, j.points, j.lastRun?.id ?? null]),
    one.map((j) => [j.repo, j.job.name, j.points, j.lastRun?.id ?? null]),
  );
});

test('a full written in place (as a merge does: the folder itself does not change) is read again', async () => {
  const dir = join(fx.repo, 'jobs', 'web01');
  const [full] = (await readdir(dir)).filter((n) => n.endsWith('.vbk'));
  assert.ok(full !== undefined);
  await quiet();
  const before = await oneJob('web01');
  const reads = reader.jobReads;
  await appendFile(join(dir, full!), Buffer.alloc(1));
  const after = await oneJob('web01');
  assert.equal(reader.jobReads, reads + 1, 'read again');
  assert.equal(after.storedBytes, before.storedBytes + 1);
});

test('refresh() (the server calls it when a run ends) reads a changed job once, so the next request reads nothing; an unchanged job is not read', async () => {
  await createJob('refreshed');
  await quiet();
  await points('refreshed');
  let reads = reader.jobReads;
  await reader.refresh(fx.repo, 'refreshed');
  assert.equal(reader.jobReads, reads, 'an unchanged job is not read');
  await cliBackup('refreshed');
  await quiet();
  await reader.refresh(fx.repo, 'refreshed');
  assert.equal(reader.jobReads, reads + 1, 'the changed job is read by refresh');
  reads = reader.jobReads;
  const opened = backupFilesOpened();
  assert.equal((await points('refreshed')).length, 1);
  assert.equal((await oneJob('refreshed')).points, 1);
  assert.equal(reader.jobReads, reads, 'the requests after it read nothing');
  assert.equal(backupFilesOpened(), opened, 'and open no backup file');
  await reader.refresh(fx.repo, 'no-such-job');
  // The other cases count the repository's jobs.
  await rm(join(fx.repo, 'jobs', 'refreshed'), { recursive: true });
  await jobs();
});

test('a backup by the CLI alone shows in GET points and in the job listing', async () => {
  const before = await points('web01');
  await cliBackup('web01');
  const now = await points('web01');
  assert.equal(now.length, before.length + 1);
  const newest = now[now.length - 1]!;
  assert.ok(!before.some((p) => p.id === newest.id));
  const [summary] = await jobs();
  assert.equal(summary!.lastPoint?.id, newest.id);
  assert.equal(summary!.points, now.length);
});

test('a hand-deleted increment is not listed; a job deleted by hand leaves the listing, is 404, and the catalog forgets it', async () => {
  const dir = join(fx.repo, 'jobs', 'web01');
  const listed = await points('web01');
  const increments = (await readdir(dir)).filter((n) => n.endsWith('.vib')).sort();
  const newest = increments[increments.length - 1]!;
  await unlink(join(dir, newest));
  const now = await points('web01');
  assert.equal(now.filter((p) => p.health === 'ok').length, listed.length - 1, 'one restorable point fewer');
  assert.equal((await fx.catalog.listPoints(fx.repo, 'web01')).filter((p) => p.file === newest).length, 0, 'the catalog no longer has its file');

  await createJob('db01');
  await cliBackup('db01');
  assert.deepEqual(
    (await jobs()).map((j) => j.job.name),
    ['db01', 'web01'],
  );
  await rm(join(fx.repo, 'jobs', 'db01'), { recursive: true });
  assert.deepEqual(
    (await jobs()).map((j) => j.job.name),
    ['web01'],
  );
  assert.deepEqual(
    (await fx.catalog.listJobs(fx.repo)).map((j) => j.name),
    ['web01'],
  );
  assert.deepEqual(await fx.catalog.listPoints(fx.repo, 'db01'), []);
  const gone = await fx.api.inject({
    method: 'GET',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}', { repo: fx.repoName, job: 'db01' }),
    headers: bearer(fx.tokens.viewer),
  });
  assert.equal(gone.statusCode, 404);
  assert.equal((gone.json() as { code: string }).code, 'LFB_ERR_JOB_NOT_FOUND');
  const noPoints = await fx.api.inject({
    method: 'GET',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}/points', { repo: fx.repoName, job: 'db01' }),
    headers: bearer(fx.tokens.viewer),
  });
  assert.equal(noPoints.statusCode, 404);
});

test('`job set` from the CLI shows in the listing; a job created by the CLI appears', async () => {
  assert.equal((await oneJob('web01')).nextRunAt, null, 'no schedule yet');
  const set = await cli(['job', 'set', 'web01', '--repo', fx.repo, '--schedule', '0 3 * * *']);
  assert.equal(set.code, 0, set.stderr);
  const next = (await oneJob('web01')).nextRunAt;
  assert.ok(next !== null && new Date(next).getTime() > Date.now(), `next run ${next}`);
  const created = await cli(['job', 'create', 'cli01', '--repo', fx.repo, '--disk', fx.source]);
  assert.equal(created.code, 0, created.stderr);
  const cli01 = (await jobs()).find((j) => j.job.name === 'cli01');
  assert.ok(cli01, 'listed');
  assert.equal(cli01.points, 0);
  assert.equal(cli01.lastPoint, null);
  assert.equal(cli01.lastRun, null);
  assert.equal(cli01.storedBytes, 0);
});

test('the job listing has what the console draws: last run, last point and its age, bytes, damaged counts', async () => {
  const run = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}/run', { repo: fx.repoName, job: 'web01' }),
    headers: bearer(fx.tokens.operator),
  });
  assert.equal(run.statusCode, 202, run.body);
  const runId = (run.json() as { id: number }).id;
  await fx.runner.ended(runId);
  const web = (await jobs()).find((j) => j.job.name === 'web01')!;
  const recorded = await fx.catalog.getRun(runId);
  assert.deepEqual(web.lastRun, { id: runId, state: 'succeeded', endedAt: recorded.endedAt, errorCode: null });
  assert.equal(web.lastPoint?.id, recorded.pointId);
  assert.ok(web.lastPoint.ageSeconds >= 0 && web.lastPoint.ageSeconds < 60, `age ${web.lastPoint.ageSeconds}`);
  const dir = join(fx.repo, 'jobs', 'web01');
  let bytes = 0;
  for (const n of await readdir(dir)) if (/\.(vbk|vib|vrb)$/.test(n)) bytes += (await stat(join(dir, n))).size;
  assert.equal(web.storedBytes, bytes, "the backup files' sizes");
  assert.equal(web.damagedPoints, 0);
  assert.equal(web.damagedFiles, 0);
  assert.deepEqual(await oneJob('web01'), { ...web, lastPoint: { ...web.lastPoint, ageSeconds: (await oneJob('web01')).lastPoint!.ageSeconds } });
});

test('repository usage is sampled into the catalog and listed for a period, oldest first', async () => {
  const sampler = usageSampler(fx.deps);
  await sampler.check();
  await cliBackup('web01');
  await sampler.check();
  const body = (await get('/api/v1/repositories/{repo}/usage')) as { samples: { at: string; bytes: number; freeBytes: number; totalBytes: number }[] };
  assert.ok(body.samples.length >= 2, `${body.samples.length} samples`);
  const last = body.samples[body.samples.length - 1]!;
  const before = body.samples[body.samples.length - 2]!;
  assert.ok(last.at > before.at, 'oldest first');
  assert.ok(last.bytes > before.bytes, 'the backup between them shows');
  assert.ok(last.totalBytes >= last.freeBytes && last.freeBytes > 0);
  const jobBytes = (await jobs()).reduce((a, j) => a + j.storedBytes, 0);
  assert.equal(last.bytes, jobBytes, "the sum of the jobs' backup files");
  const repos = (await get('/api/v1/repositories')) as { repositories: { bytes: number }[] };
  assert.equal(repos.repositories[0]!.bytes, last.bytes, 'what GET /repositories says now');
  // Nothing changed: no new sample before the hour is up.
  await sampler.check();
  const again = (await get('/api/v1/repositories/{repo}/usage')) as { samples: unknown[] };
  assert.equal(again.samples.length, body.samples.length);
  const empty = (await get('/api/v1/repositories/{repo}/usage', {}, '?until=2001-01-01T00:00:00Z')) as { samples: unknown[] };
  assert.deepEqual(empty.samples, []);
});

test("a job one of the server's runs is writing keeps its catalog copy until the run ends; then it is read once", async () => {
  await createJob('busy01');
  await cliBackup('busy01');
  await quiet();
  let writing = false;
  const r = new CatalogFreshness({
    catalog: fx.catalog,
    clock: fx.deps.clock,
    storage,
    writing: (root, job) => writing && root === fx.repo && job === 'busy01',
  });
  const pointsIn = async (): Promise<number[]> => [
    (await r.jobs(fx.repo)).find((j) => j.job.name === 'busy01')!.read.points,
    (await r.job(fx.repo, 'busy01')).read.points,
  ];
  assert.deepEqual(await pointsIn(), [1, 1]);
  writing = true;
  await cliBackup('busy01');
  await quiet();
  const reads = r.jobReads;
  assert.deepEqual(await pointsIn(), [1, 1], 'the copy from before the run while it writes');
  assert.equal(r.jobReads, reads, 'no read of a job being written');
  // Nor a listing of its folder: the signature taken before the run stands (one backup file, not two).
  const filesIn = async (): Promise<number[]> => [
    (await r.jobs(fx.repo)).find((j) => j.job.name === 'busy01')!.folder.fileBytes.size,
    (await r.job(fx.repo, 'busy01')).folder.fileBytes.size,
  ];
  assert.deepEqual(await filesIn(), [1, 1], 'the folder as it was before the run while it writes');
  writing = false;
  assert.deepEqual(await pointsIn(), [2, 2]);
  assert.equal(r.jobReads, reads + 1, 'one read once the run ended');
  assert.deepEqual(await filesIn(), [2, 2]);
});

test("a job refreshed at the end of a server's run while its folder is too recent to trust is not read by a listing: it is read once in the background when quiet", async () => {
  await createJob('settle01');
  await cliBackup('settle01');
  await quiet();
  const r = new CatalogFreshness({ catalog: fx.catalog, clock: fx.deps.clock, storage, writing: () => false });
  const pointsIn = async (): Promise<number> => (await r.jobs(fx.repo)).find((j) => j.job.name === 'settle01')!.read.points;
  assert.equal(await pointsIn(), 1);
  // The run's last writes (here: a backup, then a file made and removed in the folder) end just before its refresh.
  await cliBackup('settle01');
  // Its folder's time a moment ahead, so the refresh is racy however slow this machine is.
  await touchAhead(join(fx.repo, 'jobs', 'settle01'));
  await r.refresh(fx.repo, 'settle01');
  const reads = r.jobReads;
  assert.equal(await pointsIn(), 2, 'the refreshed copy');
  assert.equal((await r.job(fx.repo, 'settle01')).read.points, 2);
  assert.equal(r.jobReads, reads, 'no listing reads a job the server refreshed while its times settle');
  for (let i = 0; i < 100 && r.jobReads === reads; i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(r.jobReads, reads + 1, 'read once in the background once its times are trustworthy');
  await quiet();
  assert.equal(await pointsIn(), 2);
  assert.equal(r.jobReads, reads + 1, 'and not again');
});

test('a server that stops cancels the background reads of jobs still settling', async () => {
  await createJob('settle02');
  await cliBackup('settle02');
  const r = new CatalogFreshness({ catalog: fx.catalog, clock: fx.deps.clock, storage, writing: () => false });
  await touchAhead(join(fx.repo, 'jobs', 'settle02'));
  await r.refresh(fx.repo, 'settle02');
  const reads = r.jobReads;
  await r.close();
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.equal(r.jobReads, reads, 'no read after close');
});
