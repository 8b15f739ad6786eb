/**
 * A SureBackup job run by the server itself, end to end: a real `serve`, a
 * backup job with two points, and a SureBackup job with --every-point on a
 * schedule of seconds. The server runs it twice on its own: the first run
 * boots the older point, the second the newer (read back from the API's runs
 * and reports, linked both ways); `surebackup job run` then hands a third run
 * to the server, which boots the latest point again and says so. Nothing is
 * left: namespaces, taps, QEMU processes, sessions, lab records.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, cli, tempDir, until } from './helpers.js';
import { buildLabImage, labLeftovers, labNamespaces } from './lab-harness.js';
import { kill9, startServer, type Server } from './server-helpers.js';
import { removeLeftoverLabs } from '../src/lab/leftovers.js';
import { adminToken } from './service-e2e-helpers.js';

const run = promisify(execFile);

interface ApiRun {
  id: number;
  job: string;
  kind: string;
  trigger: string;
  state: string;
  reportId: string | null;
  errorCode: string | null;
}
interface ApiReport {
  id: string;
  ok: boolean;
  runId?: number;
  vms: { job: string; point: string; booted: boolean; tests: { name: string; ok: boolean }[] }[];
}

const ctx: { dir: string; repo: string; server?: Server; token: string; repoName: string; cleanup?: () => Promise<void> } = {
  dir: '',
  repo: '',
  token: '',
  repoName: '',
};
const points: string[] = [];
/** Lab ids of this file's runs (the last part of their report ids). */
const ids = new Set<string>();

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${ctx.server!.httpUrl}${path}`, { ...init, headers: { authorization: `Bearer ${ctx.token}`, ...(init.headers ?? {}) } });
  const body = (await res.json()) as T;
  assert.ok(res.ok, `${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const sbRuns = async (): Promise<ApiRun[]> =>
  (await api<{ runs: ApiRun[] }>(`/runs?job=nightly&limit=50`)).runs.filter((r) => r.kind === 'surebackup').sort((a, b) => a.id - b.id);

const report = (id: string): Promise<ApiReport> => api<ApiReport>(`/repositories/${ctx.repoName}/surebackup/reports/${id}`);

async function runLog(id: number): Promise<string[]> {
  return (await api<{ log: { message: string }[] }>(`/runs/${id}`)).log.map((l) => l.message);
}

async function sessionNames(): Promise<string[]> {
  const r = await cli(['instant', 'list', '--repo', ctx.repo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name);
}

/** Everything this file's labs could leave (test/lab-harness.ts). */
const leftovers = (): Promise<string[]> => labLeftovers({ repo: ctx.repo, ids, sessionNames });

before(async () => {
  const t = await tempDir('lifeboat-sbjobs-');
  ctx.dir = t.dir;
  ctx.cleanup = t.cleanup;
  ctx.repo = join(t.dir, 'repo');
  await writeFile(join(t.dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  const init = await cli(['repo', 'init', ctx.repo]);
  assert.equal(init.code, 0, init.stderr);
  const image = await buildLabImage(join(t.dir, 'lab-good.img'), join(t.dir, 'lab-build'));
  const created = await cli(['job', 'create', 'web', '--repo', ctx.repo, '--disk', image, '--vm-config', join(t.dir, 'vm.json')]);
  assert.equal(created.code, 0, created.stderr);
  for (let i = 0; i < 2; i++) {
    const b = await cli(['backup', 'web', '--repo', ctx.repo, '--json']);
    assert.equal(b.code, 0, b.stderr);
    points.push((JSON.parse(b.stdout) as { pointId: string }).pointId);
  }
  // Defined before the server starts: its first round schedules it (a job made later is read within the scheduler's longest sleep).
  const sb = await cli([
    'surebackup',
    'job',
    'create',
    'nightly',
    '--repo',
    ctx.repo,
    '--vm',
    'web',
    '--every-point',
    '--schedule',
    '*/2 * * * * *',
    '--timeout',
    '180',
    '--accel',
    'tcg',
  ]);
  assert.equal(sb.code, 0, sb.stderr);
  ctx.server = await startServer(ctx.repo, ['--no-portmap']);
  ctx.token = await adminToken(ctx.repo);
  ctx.repoName = (await api<{ repositories: { name: string }[] }>('/repositories')).repositories[0]!.name;
});

after(async () => {
  try {
    if (ctx.server) {
      for (const name of await sessionNames().catch(() => [])) await cli(['instant', 'stop', name, '--repo', ctx.repo]);
      await kill9(ctx.server);
    }
    await removeLeftoverLabs(join(ctx.repo, 'surebackup', 'labs')).catch(() => undefined);
    for (const ns of await labNamespaces(ids)) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  } finally {
    await ctx.cleanup?.();
  }
});

void test('the server runs a SureBackup job with --every-point by itself: older point first, then the newer; a run asked for tests the latest again', async () => {
  assert.equal(points.length, 2);
  // The scheduler starts the first run within seconds; the second follows once the first ended (fires in between coalesce).
  const firstTwo = await until(
    'two SureBackup runs',
    async () => {
      const runs = await sbRuns();
      return runs.length >= 2 ? runs : undefined;
    },
    6 * 60_000,
    500,
  );
  // No third run by the schedule: the check of this file ends with one asked for.
  const set = await cli(['surebackup', 'job', 'set', 'nightly', '--repo', ctx.repo, '--disabled']);
  assert.equal(set.code, 0, set.stderr);
  const ended = await until(
    'the second run to end',
    async () => {
      const runs = (await sbRuns()).slice(0, 2);
      return runs.every((r) => r.state !== 'queued' && r.state !== 'running') ? runs : undefined;
    },
    5 * 60_000,
    500,
  );
  assert.deepEqual(
    ended.map((r) => [r.id, r.kind, r.trigger, r.state, r.errorCode]),
    firstTwo.slice(0, 2).map((r) => [r.id, 'surebackup', 'schedule', 'succeeded', null]),
  );
  const tested: string[] = [];
  for (const r of ended) {
    assert.ok(r.reportId, `run ${r.id} names its report`);
    ids.add(r.reportId.split('-').pop()!);
    const rep = await report(r.reportId);
    assert.equal(rep.runId, r.id, 'the report names its run');
    assert.equal(rep.ok, true);
    assert.equal(rep.vms.length, 1);
    assert.equal(rep.vms[0]!.job, 'web');
    assert.ok(rep.vms[0]!.booted);
    assert.deepEqual(
      rep.vms[0]!.tests.map((t) => [t.name, t.ok]),
      [
        ['heartbeat', true],
        ['ping', true],
        ['verify', true],
        ['screenshot', true],
      ],
    );
    tested.push(rep.vms[0]!.point);
  }
  assert.deepEqual(tested, points, 'the first run booted the older point, the second the newer');
  assert.ok((await runLog(ended[0]!.id)).some((l) => l === `web: testing point ${points[0]}, the oldest not tested yet`));
  // Each point's newest result, as the points timeline reads it.
  const results = await api<{ points: { point: string; ok: boolean }[] }>(`/repositories/${ctx.repoName}/jobs/web/surebackup`);
  assert.deepEqual(results.points.map((p) => [p.point, p.ok]).sort(), points.map((p) => [p, true]).sort());
  // The job as the API shows it: its last run, no next run while disabled.
  const job = await api<{ name: string; everyPoint: boolean; disabled: boolean; nextRunAt: string | null; lastRun: { id: number } | null; retries: number }>(
    `/repositories/${ctx.repoName}/surebackup/jobs/nightly`,
  );
  assert.deepEqual([job.everyPoint, job.disabled, job.nextRunAt, job.lastRun?.id, job.retries], [true, true, null, ended[1]!.id, 0]);

  // Every point has a result: a run asked for boots the latest again, and says so. The CLI hands it to the server and follows it.
  const asked = await cli(['surebackup', 'job', 'run', 'nightly', '--repo', ctx.repo, '--json'], {}, undefined, 5 * 60_000);
  assert.equal(asked.code, 0, asked.stderr);
  const out = JSON.parse(asked.stdout) as { run: number; state: string; report: { id: string; ok: boolean } };
  assert.equal(out.state, 'succeeded');
  ids.add(out.report.id.split('-').pop()!);
  const third = (await sbRuns()).find((r) => r.id === out.run)!;
  assert.deepEqual([third.trigger, third.reportId], ['manual', out.report.id]);
  assert.equal((await report(out.report.id)).vms[0]!.point, points[1]);
  assert.ok((await runLog(out.run)).some((l) => l === `web: every point has been tested; testing the latest point ${points[1]} again`));

  assert.deepEqual(await leftovers(), []);
});

void test('a SureBackup job whose test fails ends failed with LFB_ERR_SUREBACKUP_FAILED (exit 4); a run stopped while it boots ends stopped with its lab removed', async () => {
  // Nothing listens on port 9 of the guest: its TCP test fails, the VM itself boots.
  const made = await cli([
    'surebackup',
    'job',
    'create',
    'closed-port',
    '--repo',
    ctx.repo,
    '--vm',
    `web@${points[0]!}`,
    '--port',
    'web:9',
    '--timeout',
    '180',
    '--accel',
    'tcg',
  ]);
  assert.equal(made.code, 0, made.stderr);
  const failed = await cli(['surebackup', 'job', 'run', 'closed-port', '--repo', ctx.repo], {}, undefined, 5 * 60_000);
  assert.equal(failed.code, 4, failed.stderr);
  assert.match(failed.stderr, /LFB_ERR_SUREBACKUP_FAILED/);
  const failedRun = (await api<{ runs: ApiRun[] }>('/runs?job=closed-port')).runs[0]!;
  assert.deepEqual([failedRun.kind, failedRun.state, failedRun.errorCode], ['surebackup', 'failed', 'LFB_ERR_SUREBACKUP_FAILED']);
  ids.add(failedRun.reportId!.split('-').pop()!);
  const rep = await report(failedRun.reportId!);
  assert.equal(rep.ok, false);
  assert.deepEqual(rep.vms[0]!.tests.find((t) => t.name === 'tcp:9')?.ok, false);
  assert.equal(rep.vms[0]!.point, points[0], 'a VM with @point boots that point');

  // Run now through the API, stopped through the API once its VM is starting.
  const started = await api<ApiRun>(`/repositories/${ctx.repoName}/surebackup/jobs/closed-port/run`, { method: 'POST' });
  assert.equal(started.kind, 'surebackup');
  await until('the stopped run to start its VM', async () => ((await sessionNames()).some((s) => s.startsWith('sb-')) ? true : undefined), 60_000, 200);
  for (const s of await sessionNames()) if (s.startsWith('sb-')) ids.add(s.split('-')[1]!);
  await api(`/runs/${started.id}/stop`, { method: 'POST' });
  const stopped = await until(
    'the run to end',
    async () => {
      const r = (await api<{ run: ApiRun }>(`/runs/${started.id}`)).run;
      return r.state === 'queued' || r.state === 'running' ? undefined : r;
    },
    60_000,
    200,
  );
  assert.deepEqual([stopped.state, stopped.errorCode, stopped.reportId], ['stopped', 'LFB_ERR_INTERRUPTED', null]);
  assert.ok((await runLog(started.id)).some((l) => /a person stopped it; the lab was removed/.test(l)));
  assert.deepEqual(await leftovers(), []);

  // Ctrl-C of `surebackup job run` stops the server's run (as Ctrl-C of a handed-off backup does), exit 130.
  const child = spawn(process.execPath, [BIN, 'surebackup', 'job', 'run', 'closed-port', '--repo', ctx.repo], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string | null>((r) => child.on('exit', (code, signal) => r(code ?? signal)));
  try {
    await until('the run of the CLI to start its VM', async () => ((await sessionNames()).some((s) => s.startsWith('sb-')) ? true : undefined), 60_000, 200);
    for (const s of await sessionNames()) if (s.startsWith('sb-')) ids.add(s.split('-')[1]!);
    child.kill('SIGINT');
    assert.equal(await exited, 130, err);
  } finally {
    child.kill('SIGKILL');
  }
  const cliRun = (await api<{ runs: ApiRun[] }>('/runs?job=closed-port')).runs[0]!;
  assert.deepEqual([cliRun.state, cliRun.errorCode], ['stopped', 'LFB_ERR_INTERRUPTED']);
  assert.deepEqual(await leftovers(), []);
});

void test('a SureBackup job --after a backup job runs when a backup of it succeeds, and --every-point boots the point that backup made', async () => {
  const made = await cli([
    'surebackup',
    'job',
    'create',
    'after-web',
    '--repo',
    ctx.repo,
    '--vm',
    'web',
    '--every-point',
    '--after',
    'web',
    '--timeout',
    '180',
    '--accel',
    'tcg',
  ]);
  assert.equal(made.code, 0, made.stderr);
  const unknown = await cli(['surebackup', 'job', 'create', 'after-none', '--repo', ctx.repo, '--vm', 'web', '--after', 'nosuchjob']);
  assert.equal(unknown.code, 3, 'an --after that names no backup job is refused');
  // Handed to the server (it runs for the repository): its success queues the SureBackup job.
  const b = await cli(['backup', 'web', '--repo', ctx.repo, '--json']);
  assert.equal(b.code, 0, b.stderr);
  const newPoint = (JSON.parse(b.stdout) as { pointId: string; serverRun?: number }).pointId;
  const sb = await until(
    'the SureBackup run after the backup',
    async () => {
      const r = (await api<{ runs: ApiRun[] }>('/runs?job=after-web')).runs.find((x) => x.kind === 'surebackup');
      return r && r.state !== 'queued' && r.state !== 'running' ? r : undefined;
    },
    4 * 60_000,
    500,
  );
  assert.deepEqual([sb.trigger, sb.state], ['after', 'succeeded']);
  ids.add(sb.reportId!.split('-').pop()!);
  assert.equal((await report(sb.reportId!)).vms[0]!.point, newPoint, 'the new point is the one not tested yet');
  // The backup's own run is a backup run of the same catalog.
  const backups = (await api<{ runs: ApiRun[] }>('/runs?job=web')).runs;
  assert.ok(backups.some((r) => r.kind === 'backup' && r.state === 'succeeded'));
  assert.ok(backups.every((r) => r.kind === 'backup'));
  assert.deepEqual(await leftovers(), []);
});

void test('SIGTERM to serve while a SureBackup run boots: the lab is removed, the run ends interrupted, and the next server starts clean', async () => {
  const started = await api<ApiRun>(`/repositories/${ctx.repoName}/surebackup/jobs/after-web/run`, { method: 'POST' });
  await until('the run to start its VM', async () => ((await sessionNames()).some((s) => s.startsWith('sb-')) ? true : undefined), 60_000, 200);
  for (const s of await sessionNames()) if (s.startsWith('sb-')) ids.add(s.split('-')[1]!);
  ctx.server!.proc.kill('SIGTERM');
  await ctx.server!.exited;
  assert.equal(ctx.server!.proc.exitCode !== null || ctx.server!.proc.signalCode !== null, true);
  ctx.server = await startServer(ctx.repo, ['--no-portmap']);
  const r = (await api<{ run: ApiRun }>(`/runs/${started.id}`)).run;
  assert.deepEqual([r.kind, r.state, r.errorCode], ['surebackup', 'interrupted', 'LFB_ERR_INTERRUPTED']);
  assert.ok((await runLog(started.id)).some((l) => /the server is stopping; the lab was removed/.test(l)));
  assert.deepEqual(await leftovers(), []);
  // Not retried: a SureBackup job's default is no retries.
  await new Promise((res) => setTimeout(res, 3000));
  assert.deepEqual(
    (await api<{ runs: ApiRun[] }>('/runs?job=after-web')).runs.filter((x) => x.state === 'queued' || x.state === 'running'),
    [],
  );
});
