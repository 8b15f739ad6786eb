/**
 * SureBackup jobs without a lab: which point --every-point boots, the job
 * file's checks and durable round trip, and the scheduler keys that keep a
 * SureBackup job apart from a backup job of the same name.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  deleteSureBackupJob,
  listSureBackupJobNames,
  loadSureBackupJob,
  normalizeSureBackupJob,
  saveSureBackupJob,
  sureBackupGroup,
  sureBackupJobsDir,
} from '../src/app/surebackup-jobs.js';
import { isLifeboatError } from '../src/core/errors.js';
import { chooseEveryPoint, choosePoints } from '../src/lab/every-point.js';
import { runtimeKey, splitRuntimeKey, sureBackupScheduledJobs } from '../src/service/runtime/surebackup-schedule.js';

const code = (c: string) => (err: unknown) => isLifeboatError(err) && err.code === c;

void test('every point: the oldest untested point first, then the next, then the latest again', () => {
  const points = ['p1', 'p2', 'p3'];
  assert.deepEqual(chooseEveryPoint(points, new Set()), { point: 'p1', retest: false });
  assert.deepEqual(chooseEveryPoint(points, new Set(['p1'])), { point: 'p2', retest: false });
  assert.deepEqual(chooseEveryPoint(points, new Set(['p1', 'p3'])), { point: 'p2', retest: false });
  assert.deepEqual(chooseEveryPoint(points, new Set(['p1', 'p2', 'p3'])), { point: 'p3', retest: true });
  // Results of points retention has since removed do not count.
  assert.deepEqual(chooseEveryPoint(['p4'], new Set(['p1', 'p2'])), { point: 'p4', retest: false });
  assert.equal(chooseEveryPoint([], new Set()), undefined);
});

void test('every point: several VMs each take their own oldest untested point; a pinned VM keeps its point', async () => {
  const points: Record<string, string[]> = { web: ['w1', 'w2', 'w3'], db: ['d1', 'd2'] };
  const tested: Record<string, Set<string>> = { web: new Set(['w1']), db: new Set(['d1', 'd2']) };
  const chosen = await choosePoints(
    [
      { job: 'db', point: 'latest', pinned: false },
      { job: 'web', point: 'latest', pinned: false },
      { job: 'web', point: 'latest', pinned: false },
      { job: 'web', point: 'latest', pinned: false },
      { job: 'web', point: 'w1', pinned: true },
    ],
    async (j) => points[j]!,
    async (j) => tested[j]!,
  );
  assert.deepEqual(chosen, [
    { job: 'db', point: 'd2', retest: true },
    { job: 'web', point: 'w2', retest: false },
    { job: 'web', point: 'w3', retest: false },
    { job: 'web', point: 'w3', retest: true },
    { job: 'web', point: 'w1', retest: false },
  ]);
  assert.deepEqual(
    await choosePoints(
      [{ job: 'empty', point: 'latest', pinned: false }],
      async () => [],
      async () => new Set(),
    ),
    [{ job: 'empty', point: 'latest', retest: false }],
  );
});

void test('a SureBackup job is checked by the rules of surebackup run and stored in canonical form', () => {
  const j = normalizeSureBackupJob({
    name: 'nightly',
    vms: ['db', 'web@p-7'],
    waitFor: ['db'],
    ports: ['db:5432'],
    http: ['web:http://{ip}/'],
    scripts: [],
    window: '22:00 - 6:00',
    retryDelay: '90s',
    everyPoint: false,
  });
  assert.deepEqual(j, {
    name: 'nightly',
    vms: ['db', 'web@p-7'],
    waitFor: ['db'],
    ports: ['db:5432'],
    http: ['web:http://{ip}/'],
    window: '22:00-06:00',
    retryDelay: '1m30s',
  });
  const group = sureBackupGroup(j);
  assert.deepEqual(
    group.map((v) => [v.job, v.point, v.waitForIt, v.ports, v.urls, v.bootTimeoutS]),
    [
      ['db', 'latest', true, [5432], [], 300],
      ['web', 'p-7', false, [], ['http://{ip}/'], 300],
    ],
  );
  const bad: [Record<string, unknown>, string][] = [
    [{ name: 'x', vms: [] }, 'LFB_ERR_USAGE'],
    [{ name: '-x', vms: ['web'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web@'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], ports: ['db:80'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], ports: ['web:70000'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], http: ['web:ftp://a'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], waitFor: ['db'] }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], timeoutS: 0 }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], serialPattern: '(' }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], accel: 'hvf' }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], schedule: 'every night' }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], window: '25:00-01:00' }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], retries: -1 }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], retryDelay: 'soon' }, 'LFB_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', vms: ['web'], after: 'a b' }, 'LFB_ERR_INVALID_ARGUMENT'],
  ];
  for (const [def, c] of bad) assert.throws(() => normalizeSureBackupJob(def as never), code(c), JSON.stringify(def));
});

void test('SureBackup job files: created once, changed, listed, read back, refused when hand-edited wrong, deleted', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'lb-sbjob-'));
  try {
    assert.deepEqual(await listSureBackupJobNames(repo), []);
    await saveSureBackupJob(repo, { name: 'nightly', vms: ['web'], everyPoint: true, schedule: '0 3 * * *', after: 'web' }, { create: true });
    await assert.rejects(saveSureBackupJob(repo, { name: 'nightly', vms: ['db'] }, { create: true }), code('LFB_ERR_JOB_EXISTS'));
    await assert.rejects(saveSureBackupJob(repo, { name: 'other', vms: ['db'] }, { create: false }), code('LFB_ERR_JOB_NOT_FOUND'));
    const read = await loadSureBackupJob(repo, 'nightly');
    assert.deepEqual(read, { name: 'nightly', vms: ['web'], everyPoint: true, schedule: '0 3 * * *', after: 'web' });
    await saveSureBackupJob(repo, { ...read, everyPoint: false, disabled: true }, { create: false });
    assert.deepEqual(await loadSureBackupJob(repo, 'nightly'), { name: 'nightly', vms: ['web'], schedule: '0 3 * * *', after: 'web', disabled: true });
    assert.deepEqual(JSON.parse(await readFile(join(sureBackupJobsDir(repo), 'nightly.json'), 'utf8')).disabled, true);
    // The scheduler's view: a task per VM, no retries by default, `after` pointing at the backup job's key.
    assert.deepEqual(await sureBackupScheduledJobs(repo, true, () => assert.fail('no problem expected')), [
      {
        key: runtimeKey('surebackup', repo, 'nightly'),
        schedule: '0 3 * * *',
        window: undefined,
        retries: 0,
        retryDelay: undefined,
        after: runtimeKey('backup', repo, 'web'),
        disabled: true,
        tasks: 1,
      },
    ]);
    await writeFile(join(sureBackupJobsDir(repo), 'broken.json'), JSON.stringify({ name: 'broken', vms: ['web'], colour: 'red' }));
    await assert.rejects(loadSureBackupJob(repo, 'broken'), code('LFB_ERR_INVALID_ARGUMENT'));
    const problems: string[] = [];
    assert.equal((await sureBackupScheduledJobs(repo, true, (n) => void problems.push(n))).length, 1);
    assert.deepEqual(problems, ['broken']);
    assert.deepEqual(await listSureBackupJobNames(repo), ['broken', 'nightly']);
    await deleteSureBackupJob(repo, 'broken');
    await assert.rejects(deleteSureBackupJob(repo, 'broken'), code('LFB_ERR_JOB_NOT_FOUND'));
    await deleteSureBackupJob(repo, 'nightly');
    await assert.rejects(loadSureBackupJob(repo, 'nightly'), code('LFB_ERR_JOB_NOT_FOUND'));
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
});

void test('scheduler keys: a SureBackup job, a copy job and a backup job of one name never share a key', () => {
  const b = runtimeKey('backup', '/repos/a', 'web');
  const s = runtimeKey('surebackup', '/repos/a', 'web');
  assert.notEqual(b, s);
  assert.deepEqual(splitRuntimeKey(b), { kind: 'backup', repo: '/repos/a', job: 'web' });
  assert.deepEqual(splitRuntimeKey(s), { kind: 'surebackup', repo: '/repos/a', job: 'web' });
  // A repository folder named like the prefix is still a backup job's repository (keys of backups start with an absolute path).
  assert.deepEqual(splitRuntimeKey(runtimeKey('backup', '/surebackup:x', 'web')), { kind: 'backup', repo: '/surebackup:x', job: 'web' });
  // Nor does a copy job of that name share either key.
  const c = runtimeKey('copy', '/repos/a', 'web');
  assert.equal(new Set([b, s, c]).size, 3);
  assert.deepEqual(splitRuntimeKey(c), { kind: 'copy', repo: '/repos/a', job: 'web' });
  assert.deepEqual(splitRuntimeKey(runtimeKey('backup', '/copy:x', 'web')), { kind: 'backup', repo: '/copy:x', job: 'web' });
});
