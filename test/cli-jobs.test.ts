import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jobCreate } from '../src/cli/commands/job-create.js';
import { JOB_SET_HANDLED } from '../src/cli/commands/job-set.js';
import { readCheckedJson, writeCheckedJson } from '../src/repository/checked-json.js';
import { removeHold, writeHold } from '../src/repository/holds.js';
import { LockFile } from '../src/storage/lock-file.js';
import { cli, randomBytes, rng, tempDir, type CliResult } from './helpers.js';

// One repository for the whole file: job "web" has points, others are made by the tests that need them.
const ENV = { LIFEBOAT_NOW: '2026-06-01T08:00:00Z' };
let dir = '';
let repo = '';
let disk = '';
let diskData: Buffer = Buffer.alloc(0);
let cleanup = async (): Promise<void> => undefined;

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

function fails(r: CliResult, exit: number, code: string): void {
  assert.equal(r.code, exit, `expected exit ${exit}, got ${r.code}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`), r.stderr);
}

const run = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => cli(args, { ...ENV, ...env });

interface ShownJob {
  name: string;
  method: string;
  retainPoints: number;
  retainDays?: number;
  cbt?: boolean;
  activeFullDays: string[];
  syntheticFullDays?: string[];
  gfs?: { weekly: number; monthly: number; yearly: number };
  disks: string[];
  points: number;
}

async function show(job: string): Promise<ShownJob> {
  return JSON.parse(ok(await run(['job', 'show', job, '--repo', repo, '--json']), `job show ${job}`)) as ShownJob;
}

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-cli-jobs-'));
  repo = join(dir, 'repo');
  disk = join(dir, 'web.img');
  diskData = randomBytes(rng(13), 1 << 20);
  await writeFile(disk, diskData);
  ok(await run(['repo', 'init', repo, '--block-size', '256K']), 'repo init');
  ok(await run(['job', 'create', 'web', '--repo', repo, '--disk', disk, '--method', 'forward', '--retain-points', '5']), 'job create');
  ok(await run(['backup', 'web', '--repo', repo]), 'backup');
});

after(() => cleanup());

test('job show: every setting, in words and as JSON; an unknown job is exit 3', async () => {
  const human = ok(await run(['job', 'show', 'web', '--repo', repo]), 'job show');
  assert.match(human, /^job web$/m);
  assert.match(human, /method: +forward incremental/);
  assert.match(human, /retention: +5 points/);
  assert.match(human, /restore points: +1/);
  assert.ok(human.includes(disk), human);
  const j = await show('web');
  assert.equal(j.name, 'web');
  assert.equal(j.retainPoints, 5);
  assert.deepEqual(j.disks, [disk]);
  assert.equal(j.points, 1);
  fails(await run(['job', 'show', 'nosuch', '--repo', repo]), 3, 'LFB_ERR_JOB_NOT_FOUND');
});

test('job set: changes what is given, checked as job create checks it; a refused change leaves job.json as it was', async () => {
  ok(await run(['job', 'create', 'edit', '--repo', repo, '--disk', disk, '--method', 'forward', '--retain-points', '7']), 'job create edit');
  const jobFile = join(repo, 'jobs', 'edit', 'job.json');
  // --cbt needs a disk that can track changes (a qcow2 image, by its magic); a raw one is refused (test/cli-reports.test.ts).
  const qcow2 = join(dir, 'edit.qcow2');
  await writeFile(qcow2, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(1020)]));
  const out = ok(
    await run(['job', 'set', 'edit', '--repo', repo, '--method', 'forever', '--retain-days', '14', '--disk', qcow2, '--cbt', '--gfs', 'weekly=4']),
    'job set',
  );
  assert.match(out, /method: forward incremental → forever incremental/);
  assert.match(out, /retention: 7 points → 14 days/);
  let j = await show('edit');
  assert.equal(j.method, 'forever');
  assert.equal(j.retainDays, 14);
  assert.equal(j.cbt, true);
  assert.deepEqual(j.gfs, { weekly: 4, monthly: 0, yearly: 0 });
  // Back to retention by points; switches off; the schedule cleared with "none".
  ok(
    await run(['job', 'set', 'edit', '--repo', repo, '--retain-points', '9', '--disk', disk, '--no-cbt', '--gfs', 'none', '--active-full', 'sun']),
    'job set 2',
  );
  j = await show('edit');
  assert.equal(j.retainPoints, 9);
  assert.equal(j.retainDays, undefined);
  assert.equal(j.cbt, undefined);
  assert.equal(j.gfs, undefined);
  assert.deepEqual(j.activeFullDays, ['sun']);
  // Forward with no full day and no GFS never deletes anything: job set warns as job create does.
  const unbounded = await run(['job', 'set', 'edit', '--repo', repo, '--method', 'forward', '--active-full', 'none', '--json']);
  assert.ok((JSON.parse(ok(unbounded, 'job set 3')) as { warnings: string[] }).warnings.length > 0);
  assert.match(unbounded.stderr, /warning/);
  assert.deepEqual((await show('edit')).activeFullDays, []);
  ok(await run(['job', 'set', 'edit', '--repo', repo, '--method', 'forever']), 'job set back to forever');

  const saved = await readFile(jobFile);
  // The rules of job create, on the job as it would become (refusals change nothing, so they run side by side).
  const refused: [string[], number, string][] = [
    [['--retain-points', '0'], 2, 'LFB_ERR_USAGE'],
    [['--retain-points', '3', '--retain-days', '3'], 2, 'LFB_ERR_USAGE'],
    [['--synthetic-full', 'sat'], 2, 'LFB_ERR_INVALID_ARGUMENT'], // the job is forever forward
    [['--method', 'reverse', '--gfs', 'weekly=2'], 2, 'LFB_ERR_INVALID_ARGUMENT'],
    [['--transform-to-rollbacks'], 2, 'LFB_ERR_INVALID_ARGUMENT'],
    [['--disk-format', 'zip'], 2, 'LFB_ERR_INVALID_ARGUMENT'],
    [['--disk', join(dir, 'missing.img')], 3, 'LFB_ERR_DISK_NOT_FOUND'],
    [['--cbt', '--no-cbt'], 2, 'LFB_ERR_USAGE'],
    [[], 2, 'LFB_ERR_USAGE'],
  ];
  const results = await Promise.all(refused.map(([flags]) => run(['job', 'set', 'edit', '--repo', repo, ...flags])));
  results.forEach((r, i) => fails(r, refused[i]![1], refused[i]![2]));
  fails(await run(['job', 'set', 'nosuch', '--repo', repo, '--method', 'forward']), 3, 'LFB_ERR_JOB_NOT_FOUND');
  assert.deepEqual(await readFile(jobFile), saved);

  // A valid change of several settings at once that are only valid together.
  ok(await run(['job', 'set', 'edit', '--repo', repo, '--method', 'forward', '--synthetic-full', 'sat', '--transform-to-rollbacks']), 'job set 4');
  j = await show('edit');
  assert.equal(j.method, 'forward');
  assert.deepEqual(j.syntheticFullDays, ['sat']);
  // The changed job still loads and backs up.
  ok(await run(['backup', 'edit', '--repo', repo]), 'backup after job set');
});

test('job set: every flag of job create can be changed', () => {
  for (const flag of Object.keys(jobCreate.options)) assert.ok(JOB_SET_HANDLED.has(flag), `job set does not handle --${flag} of job create`);
});

test('job set and job delete wait for the job lock: a running backup is never changed under it', async () => {
  ok(await run(['job', 'create', 'locked', '--repo', repo, '--disk', disk, '--retain-points', '7']), 'job create locked');
  const lock = await LockFile.acquire(join(repo, 'jobs', 'locked', 'lock'), 'test');
  try {
    fails(await run(['job', 'set', 'locked', '--repo', repo, '--retain-points', '3']), 11, 'LFB_ERR_JOB_LOCKED');
    fails(await run(['job', 'delete', 'locked', '--repo', repo]), 11, 'LFB_ERR_JOB_LOCKED');
  } finally {
    await lock.release();
  }
  assert.equal((await show('locked')).retainPoints, 7);
  ok(await run(['job', 'set', 'locked', '--repo', repo, '--retain-points', '3']), 'job set after release');
  assert.equal((await show('locked')).retainPoints, 3);
});

test('job delete: points are kept unless --with-points, never while a session holds one', async () => {
  // A job without points goes at once.
  ok(await run(['job', 'create', 'bare', '--repo', repo, '--disk', disk]), 'job create bare');
  assert.match(ok(await run(['job', 'delete', 'bare', '--repo', repo]), 'delete bare'), /deleted job bare/);
  assert.doesNotMatch(ok(await run(['job', 'list', '--repo', repo]), 'job list'), /^bare$/m);
  fails(await run(['job', 'delete', 'bare', '--repo', repo]), 3, 'LFB_ERR_JOB_NOT_FOUND');

  ok(await run(['job', 'create', 'old', '--repo', repo, '--disk', disk]), 'job create old');
  ok(await run(['backup', 'old', '--repo', repo]), 'backup old');
  const jobDir = join(repo, 'jobs', 'old');
  const r = await run(['job', 'delete', 'old', '--repo', repo]);
  fails(r, 5, 'LFB_ERR_JOB_HAS_POINTS');
  assert.match(r.stderr, /1 restore point/);
  assert.match(r.stderr, /--with-points/);
  assert.equal((await show('old')).points, 1);

  const pointId = (JSON.parse(ok(await run(['points', 'old', '--repo', repo, '--json']), 'points')) as { id: string }[])[0]!.id;
  await writeHold(jobDir, 'session-old-ir', pointId);
  const held = await run(['job', 'delete', 'old', '--repo', repo, '--with-points']);
  fails(held, 5, 'LFB_ERR_POINT_HELD');
  assert.match(held.stderr, /instant stop old-ir/);
  assert.equal((await show('old')).points, 1);
  await removeHold(jobDir, 'session-old-ir');

  const gone = JSON.parse(ok(await run(['job', 'delete', 'old', '--repo', repo, '--with-points', '--json']), 'delete --with-points')) as {
    pointsDeleted: number;
  };
  assert.equal(gone.pointsDeleted, 1);
  await assert.rejects(stat(jobDir), { code: 'ENOENT' });
  assert.doesNotMatch(ok(await run(['job', 'list', '--repo', repo]), 'job list'), /^old$/m);
  // The other jobs are untouched.
  assert.equal((await show('web')).points, 1);
});

test('LIFEBOAT_REPO stands for --repo when it is not given; --repo wins', async () => {
  const env = { LIFEBOAT_REPO: repo };
  assert.match(ok(await run(['job', 'list'], env), 'job list'), /^web$/m);
  assert.equal((JSON.parse(ok(await run(['points', 'web', '--json'], env), 'points')) as unknown[]).length, 1);
  assert.match(ok(await run(['job', 'show', 'web'], env), 'job show'), /^job web$/m);
  assert.match(ok(await run(['job', 'list', '--repo', repo], { LIFEBOAT_REPO: join(dir, 'not-a-repo') }), 'flag wins'), /^web$/m);
  fails(await run(['job', 'list'], { LIFEBOAT_REPO: join(dir, 'not-a-repo') }), 3, 'LFB_ERR_REPO_NOT_FOUND');
  const none = await run(['job', 'list'], { LIFEBOAT_REPO: '' });
  fails(none, 2, 'LFB_ERR_USAGE');
  assert.match(none.stderr, /LIFEBOAT_REPO/);
});

test('restore --to <folder>/ writes <folder>/<disk>.<format>; --to a file takes its format from the extension', async () => {
  const into = join(dir, 'restored');
  await mkdir(into);
  for (const to of [`${into}/`, into]) {
    ok(await run(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', to, '--force']), `restore into ${to}`);
    const names = await readdir(into);
    assert.equal(names.length, 1, names.join(', '));
    assert.match(names[0]!, /\.raw$/);
    assert.deepEqual(await readFile(join(into, names[0]!)), diskData);
  }
  fails(await run(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', join(dir, 'no-such-folder') + '/']), 2, 'LFB_ERR_INVALID_ARGUMENT');

  const qcow2 = join(dir, 'web01.qcow2');
  assert.match(ok(await run(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', qcow2]), 'restore qcow2'), /\(qcow2,/);
  assert.equal((await readFile(qcow2)).subarray(0, 4).toString('latin1'), 'QFI\xfb');
  execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', qcow2, disk]);
  const img = join(dir, 'web01.img');
  ok(await run(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', img]), 'restore img');
  assert.deepEqual(await readFile(img), diskData);
  // --format still decides when given.
  const forced = join(dir, 'forced.qcow2');
  ok(await run(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', forced, '--format', 'raw']), 'restore --format raw');
  assert.deepEqual(await readFile(forced), diskData);
});

test('a backup waiting for the job lock runs with the settings a job set wrote meanwhile, and finds a job deleted meanwhile gone', async () => {
  const other = join(dir, 'other.img');
  const otherData = randomBytes(rng(29), 1 << 20);
  await writeFile(other, otherData);
  ok(await run(['job', 'create', 'race', '--repo', repo, '--disk', disk, '--method', 'forward', '--retain-points', '7']), 'job create race');
  const jobDir = join(repo, 'jobs', 'race');
  // What job set does under the lock, while a backup started before waits for it.
  let lock = await LockFile.acquire(join(jobDir, 'lock'), 'test');
  let waiting: Promise<CliResult>;
  try {
    waiting = run(['backup', 'race', '--repo', repo, '--wait']);
    await new Promise((r) => setTimeout(r, 2000)); // the backup has read job.json and waits for the lock
    ok(await run(['job', 'show', 'race', '--repo', repo]), 'show'); // (reads are not locked)
    const def = await readCheckedJson<Record<string, unknown>>(join(jobDir, 'job.json'), 'LFB_ERR_JOB_CORRUPT');
    await writeCheckedJson(join(jobDir, 'job.json'), { ...def, disks: [other] });
  } finally {
    await lock.release();
  }
  ok(await waiting, 'backup after the change');
  const restored = join(dir, 'race.raw');
  ok(await run(['restore', 'race', '--repo', repo, '--point', 'latest', '--to', restored]), 'restore race');
  assert.deepEqual(await readFile(restored), otherData, 'the backup read the disk job set put in');

  // What job delete does under the lock.
  lock = await LockFile.acquire(join(jobDir, 'lock'), 'test');
  try {
    waiting = run(['backup', 'race', '--repo', repo, '--wait']);
    await new Promise((r) => setTimeout(r, 2000));
    await rm(jobDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }); // the waiting backup polls the lock in this folder
  } finally {
    await lock.release();
  }
  fails(await waiting, 3, 'LFB_ERR_JOB_NOT_FOUND');
  await assert.rejects(stat(jobDir), { code: 'ENOENT' });
});
