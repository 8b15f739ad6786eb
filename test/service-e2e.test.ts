/**
 * The service end to end: real `lifeboat serve` processes running jobs on
 * their schedules by themselves, the runs read back through the HTTP API
 * (every response validated against the served OpenAPI document). A job on
 * a seconds-level schedule; a missing source retried until it is back; ten
 * jobs under --max-tasks 2; kill -9 mid-run and a restart; a stop through
 * the API and SIGTERM mid-run; --no-scheduler; a fire missed while the
 * server was down; a job created through the API. Every server and child
 * process is stopped in every outcome.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from './helpers.js';
import { kill9 } from './server-helpers.js';
import {
  Api,
  LONG_RUN_MIB,
  adminToken,
  ended,
  lifeboat,
  oncePerMinuteAt,
  oncePerMinuteFrom,
  scenario,
  sha256File,
  waitFor,
  writeTextDisk,
  type Run,
} from './service-e2e-helpers.js';

/** A case that hangs (a server that stops answering) fails after this long; its after hook still kills its servers. */
const CASE = { timeout: 150_000 };

test('a job on a seconds-level schedule runs by itself, again and again; its runs, their log and the journald line are there', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-tick-');
  const repo = join(dir, 'repo');
  const disk = join(dir, 'tick.img');
  await writeTextDisk(disk, 4);
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), lifeboat(['job', 'create', 'tick', '--repo', repo, '--disk', disk, '--schedule', '*/2 * * * * *'])]);
  // Chained: tock runs after each run of tick that succeeds.
  await lifeboat(['job', 'create', 'tock', '--repo', repo, '--disk', disk, '--after', 'tick']);
  const server = await servers.start(repo);
  const api = await Api.connect(server.httpUrl, token);

  const runs = await waitFor('two succeeded runs of tick and one of tock', 30_000, async () => {
    const all = await api.runs('tick');
    const chained = (await api.runs('tock')).filter((r) => r.state === 'succeeded');
    return all.filter((r) => r.state === 'succeeded').length >= 2 && chained.length >= 1 ? all : undefined;
  });
  const done = runs.filter((r) => r.state === 'succeeded');
  for (const r of runs) assert.equal(r.trigger, 'schedule', `run ${r.id} was started by ${r.trigger}`);
  assert.deepEqual(
    runs.filter(ended).map((r) => r.state),
    done.map(() => 'succeeded'),
    'every ended run succeeded',
  );
  for (const r of done) {
    assert.match(r.pointId ?? '', /^[0-9a-f]{12}$/, `run ${r.id} names no point`);
    assert.equal(r.attempt, 1);
    assert.equal(r.retryOf, null);
    assert.equal(r.bytesRead, 4 * MiB, `run ${r.id} read ${r.bytesRead} bytes`);
    assert.ok(r.startedAt !== null && r.endedAt !== null && r.startedAt <= r.endedAt && r.queuedAt <= r.startedAt);
    assert.equal(r.errorCode, null);
    assert.equal(r.repoName, 'repo');
  }
  // The first run reads everything; the next ones compare block hashes (nothing changed: nothing new is stored).
  assert.equal(done[0]!.changeMethod, 'full');
  assert.ok(done[0]!.bytesStored > 0);
  for (const r of done.slice(1)) assert.equal(r.changeMethod, 'hash', `run ${r.id} found its changes by ${r.changeMethod}`);
  assert.notEqual(done[0]!.pointId, done[1]!.pointId);
  // Two fires of the schedule, not one run queued twice.
  assert.ok(Date.parse(done[1]!.queuedAt) - Date.parse(done[0]!.queuedAt) >= 1000, `queued at ${done[0]!.queuedAt} and ${done[1]!.queuedAt}`);

  // The chained job: queued by the end of a successful run of tick, not by a schedule.
  const tock = (await api.runs('tock')).find((r) => r.state === 'succeeded')!;
  assert.equal(tock.trigger, 'after');
  assert.ok(
    runs.some((r) => r.state === 'succeeded' && r.endedAt! <= tock.queuedAt),
    `tock queued at ${tock.queuedAt}, before any run of tick ended`,
  );
  assert.match(tock.pointId ?? '', /^[0-9a-f]{12}$/);

  // One run with its tasks and its log.
  const second = await api.run(done[1]!.id);
  assert.equal(second.run.id, done[1]!.id);
  assert.deepEqual(
    second.tasks.map((k) => [k.disk, k.state]),
    [[0, 'succeeded']],
  );
  assert.ok(second.log.length >= 2, `log: ${JSON.stringify(second.log)}`);
  assert.match(second.log[0]!.message, /started \(schedule\)/);
  assert.ok(
    second.log.some((l) => l.message.includes(`succeeded: point ${done[1]!.pointId}`) && l.message.includes('changes found by hash')),
    JSON.stringify(second.log),
  );

  // The journald line of each ended run on standard error.
  await waitFor('the journal line of the second run', 5000, async () => (server.stderr().includes(`run=${done[1]!.id} `) ? true : undefined));
  const line = server
    .stderr()
    .split('\n')
    .find((l) => l.includes(`run=${done[1]!.id} `));
  assert.match(
    line ?? '',
    new RegExp(`^<6>lifeboat run=${done[1]!.id} job=tick repo=\\S+ state=succeeded trigger=schedule .*point=${done[1]!.pointId} changes=hash`),
  );
});

test('a job created through the API with a schedule runs at its first fire: the scheduler asks again when a job changes', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-apijob-');
  const repo = join(dir, 'repo');
  const disk = join(dir, 'web.img');
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), writeTextDisk(disk, 1)]);
  // No job yet: nothing is due, and the scheduler sleeps its longest (30 s).
  const server = await servers.start(repo);
  const api = await Api.connect(server.httpUrl, token);
  const createdAt = Date.now();
  await api.call('POST', '/api/v1/repositories/{repo}/jobs', { repo: 'repo' }, {}, 201, { name: 'web', disks: [disk], schedule: '*/2 * * * * *' });
  const run = await waitFor('a run of the new job', 8000, async () => (await api.runs('web')).find(ended));
  assert.equal(run.trigger, 'schedule');
  assert.equal(run.state, 'succeeded', `${run.errorCode} ${run.errorMessage}`);
  assert.ok(Date.parse(run.queuedAt) - createdAt < 4000, `queued ${Date.parse(run.queuedAt) - createdAt} ms after the job was created`);
});

test('a missing source fails, is retried after its delay, and succeeds once it is back', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-retry-');
  const repo = join(dir, 'repo');
  const disk = join(dir, 'flaky.img');
  const away = join(dir, 'flaky.away');
  await writeTextDisk(disk, 2);
  await lifeboat(['repo', 'init', repo]);
  const token = await adminToken(repo);
  await lifeboat(['job', 'create', 'flaky', '--repo', repo, '--disk', disk, '--retries', '3', '--retry-delay', '2s']);
  await rename(disk, away);
  const server = await servers.start(repo);
  const api = await Api.connect(server.httpUrl, token);
  // Retries follow only runs the server started: the first run comes from the schedule, once a minute from two
  // seconds on (the retries, two seconds apart, are over long before it fires again).
  await api.setSchedule('flaky', oncePerMinuteFrom(2000));

  // The first run and its first retry fail; then the source comes back.
  await waitFor('two failed runs', 75_000, async () => ((await api.runs('flaky')).filter((r) => r.state === 'failed').length >= 2 ? true : undefined), 50);
  await rename(away, disk);
  const runs = await waitFor('a run that succeeds', 20_000, async () => {
    const all = await api.runs('flaky');
    return all.some((r) => r.state === 'succeeded' || r.attempt > 4) ? all : undefined;
  });
  const last = runs.at(-1)!;
  assert.equal(last.state, 'succeeded', JSON.stringify(runs, null, 1));
  assert.ok(runs.length >= 3 && runs.length <= 4, `${runs.length} runs`);
  assert.equal(runs[0]!.trigger, 'schedule');
  assert.equal(runs[0]!.attempt, 1);
  assert.equal(runs[0]!.retryOf, null);
  for (const [i, r] of runs.entries()) {
    if (r !== last) {
      assert.equal(r.state, 'failed');
      assert.equal(r.errorCode, 'LFB_ERR_DISK_NOT_FOUND', `run ${r.id}: ${r.errorCode} ${r.errorMessage}`);
      assert.ok(r.errorMessage?.includes(disk), r.errorMessage ?? '');
      assert.equal(r.pointId, null);
    }
    if (i === 0) continue;
    const before = runs[i - 1]!;
    assert.equal(r.trigger, 'retry');
    assert.equal(r.attempt, i + 1);
    assert.equal(r.retryOf, before.id);
    const waited = Date.parse(r.queuedAt) - Date.parse(before.endedAt!);
    assert.ok(waited >= 2000 && waited < 8000, `run ${r.id} was queued ${waited} ms after run ${before.id} ended`);
  }
  assert.match(last.pointId ?? '', /^[0-9a-f]{12}$/);
  assert.equal(last.changeMethod, 'full');
  assert.equal(last.errorCode, null);
  const failedLog = await api.run(runs[0]!.id);
  assert.ok(
    failedLog.log.some((l) => l.level === 'error' && l.message.includes('[LFB_ERR_DISK_NOT_FOUND]')),
    JSON.stringify(failedLog.log),
  );
  assert.match(server.stderr(), new RegExp(`<3>lifeboat run=${runs[0]!.id} job=flaky .*state=failed trigger=schedule .*code=LFB_ERR_DISK_NOT_FOUND`));
  assert.match(server.stderr(), new RegExp(`<6>lifeboat run=${last.id} job=flaky .*state=succeeded trigger=retry attempt=${last.attempt} `));

  // A run that succeeded is not retried.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await api.runs('flaky')).length, runs.length);
});

test('ten jobs fired by the same schedule under --max-tasks 2: never more than two run at once, all ten succeed', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-cap-');
  const repo = join(dir, 'repo');
  const names = Array.from({ length: 10 }, (_, i) => `vm${i}`);
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), ...names.map((n) => writeTextDisk(join(dir, `${n}.img`), 32))]);
  // Every ten seconds: the first fire after the start queues all ten at once (later fires queue more runs; the cap holds for them too).
  const schedule = '*/10 * * * * *';
  // Five at a time: the CLI's start-up is most of a job create.
  for (let i = 0; i < names.length; i += 5)
    await Promise.all(
      names.slice(i, i + 5).map((n) => lifeboat(['job', 'create', n, '--repo', repo, '--disk', join(dir, `${n}.img`), '--schedule', schedule])),
    );
  const server = await servers.start(repo, ['--max-tasks', '2']);
  const api = await Api.connect(server.httpUrl, token);

  const first = await waitFor(
    'a succeeded run of every job',
    60_000,
    async () => {
      const out: Run[] = [];
      for (const n of names) {
        const r = (await api.runs(n))[0];
        if (r === undefined || !ended(r)) return undefined;
        out.push(r);
      }
      return out;
    },
    250,
  );
  for (const r of first) {
    assert.equal(r.state, 'succeeded', `${r.job}: ${r.state} ${r.errorCode} ${r.errorMessage}`);
    assert.equal(r.trigger, 'schedule');
    assert.equal(r.bytesRead, 32 * MiB);
  }
  // One fire queued them all at once; they started in the order they were queued.
  assert.equal(new Set(first.map((r) => r.queuedAt)).size, 1, `queued at ${first.map((r) => r.queuedAt).join(', ')}`);
  const byId = [...first].sort((a, b) => a.id - b.id);
  for (let i = 1; i < byId.length; i++) assert.ok(byId[i]!.startedAt! >= byId[i - 1]!.startedAt!, `run ${byId[i]!.id} started before run ${byId[i - 1]!.id}`);

  // From the catalog's start and end times of every run so far: how many ran at once, at most (an end before a start
  // at the same instant; a run still going has not ended).
  const all = (await Promise.all(names.map((n) => api.runs(n)))).flat().filter((r) => r.startedAt !== null);
  const events = all.flatMap((r) => [
    { at: Date.parse(r.startedAt!), step: 1 },
    { at: r.endedAt === null ? Infinity : Date.parse(r.endedAt), step: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.step - b.step);
  let running = 0;
  let most = 0;
  for (const e of events) most = Math.max(most, (running += e.step));
  const spans = all
    .sort((a, b) => a.id - b.id)
    .map((r) => `${r.job} ${r.startedAt!.slice(17, 23)}-${r.endedAt?.slice(17, 23) ?? 'now'}`)
    .join(', ');
  assert.equal(most, 2, `at most ${most} at once: ${spans}`);
  t.diagnostic(`runs (seconds): ${spans}`);
});

test('kill -9 of serve mid-run: at the restart the run is interrupted, retried by itself, and every point restores bit-exact', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-kill-');
  const repo = join(dir, 'repo');
  const disk = join(dir, 'db.img');
  /** The source's SHA-256 when each point was made. */
  const contentOf = new Map<string, string>();
  const backupByHand = async (): Promise<void> => {
    const made = JSON.parse(await lifeboat(['backup', 'db', '--repo', repo, '--json'])) as { pointId: string };
    contentOf.set(made.pointId, await sha256File(disk));
  };
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), writeTextDisk(disk, LONG_RUN_MIB)]);
  await lifeboat(['job', 'create', 'db', '--repo', repo, '--disk', disk, '--retries', '3', '--retry-delay', '2s']);
  await backupByHand();
  const fh = await open(disk, 'r+');
  await fh.write(randomBytes(3 * MiB), 0, 3 * MiB, 200 * MiB).finally(() => fh.close());
  await backupByHand();
  // New content everywhere: the scheduled run compresses the whole disk, which takes seconds.
  const finalContent = await writeTextDisk(disk, LONG_RUN_MIB);
  let server = await servers.start(repo);
  let api = await Api.connect(server.httpUrl, token);
  await api.setSchedule('db', oncePerMinuteFrom(2000));

  const victim = await waitFor('the scheduled run', 75_000, async () => (await api.runs('db'))[0], 20);
  assert.equal(victim.trigger, 'schedule');
  await api.midway(victim.id);
  await kill9(server);

  server = await servers.start(repo);
  api = await Api.connect(server.httpUrl, token);
  const interrupted = (await api.run(victim.id)).run;
  assert.equal(interrupted.state, 'interrupted', `the run was not cut short (it ended before the kill?): ${JSON.stringify(interrupted)}`);
  assert.equal(interrupted.errorCode, 'LFB_ERR_INTERRUPTED');
  assert.equal(interrupted.pointId, null);
  assert.ok(interrupted.endedAt !== null);
  // Its end has its journal line too, written when the new server found it (before the API listened: the whole output is searched).
  assert.match(server.log(), new RegExp(`<4>lifeboat run=${victim.id} job=db .*state=interrupted trigger=schedule .*code=LFB_ERR_INTERRUPTED`));
  const retried = await waitFor(
    'the retry to end',
    60_000,
    async () => {
      const r = (await api.runs('db')).find((x) => x.retryOf === victim.id);
      return r !== undefined && ended(r) ? r : undefined;
    },
    250,
  );
  assert.equal(retried.trigger, 'retry');
  assert.equal(retried.attempt, 2);
  assert.equal(retried.state, 'succeeded', `${retried.errorCode} ${retried.errorMessage}`);
  assert.ok(Date.parse(retried.queuedAt) - Date.parse(interrupted.endedAt!) >= 2000, 'the retry waited its delay');
  contentOf.set(retried.pointId!, finalContent);
  assert.match(server.stderr(), new RegExp(`<6>lifeboat run=${retried.id} job=db .*state=succeeded trigger=retry attempt=2 `));
  const log = await api.run(victim.id);
  assert.ok(
    log.log.some((l) => l.level === 'warn' && l.message.startsWith('interrupted')),
    JSON.stringify(log.log),
  );
  await kill9(server);

  // The killed run's temporary backup file went with the retry.
  assert.deepEqual(
    (await readdir(join(repo, 'jobs', 'db'))).filter((n) => n.endsWith('.tmp')),
    [],
  );
  // Every point: the two made by hand before the kill, and the retry's. The killed run left none.
  const points = (JSON.parse(await lifeboat(['points', 'db', '--repo', repo, '--json'])) as { id: string; available: boolean }[]).filter((p) => p.available);
  assert.deepEqual(
    points.map((p) => p.id),
    [...contentOf.keys()],
  );
  for (const [point, sha] of contentOf) {
    const to = join(dir, `restored-${point}.img`);
    await lifeboat(['restore', 'db', '--repo', repo, '--point', point, '--to', to, '--format', 'raw']);
    assert.equal(await sha256File(to), sha, `point ${point} does not restore the source as it was`);
    await rm(to);
  }
});

test(
  'a run stopped through the API ends stopped; SIGTERM during a run: serve exits 0 within seconds, the run is recorded interrupted, nothing stays locked',
  CASE,
  async (t) => {
    const { dir, servers } = await scenario(t, 'lifeboat-e2e-term-');
    const repo = join(dir, 'repo');
    const disk = join(dir, 'app.img');
    await lifeboat(['repo', 'init', repo]);
    const [token] = await Promise.all([adminToken(repo), writeTextDisk(disk, LONG_RUN_MIB)]);
    await lifeboat(['job', 'create', 'app', '--repo', repo, '--disk', disk]);
    const server = await servers.start(repo);
    const api = await Api.connect(server.httpUrl, token);

    // Stopped through the API midway: it ends stopped at a safe point, leaving nothing behind.
    const first = await api.call<Run>('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', { repo: 'repo', job: 'app' }, {}, 202);
    await api.midway(first.id);
    const stopped = await api.call<Run>('POST', '/api/v1/runs/{id}/stop', { id: String(first.id) });
    assert.equal(stopped.state, 'stopped', JSON.stringify(stopped));
    assert.equal(stopped.errorCode, 'LFB_ERR_INTERRUPTED');
    assert.equal(stopped.pointId, null);
    assert.deepEqual(await readdir(join(repo, 'jobs', 'app')), ['job.json']);
    await waitFor('the journal line of the stopped run', 5000, async () => (server.stderr().includes(`run=${first.id} `) ? true : undefined));
    assert.match(server.stderr(), new RegExp(`<5>lifeboat run=${first.id} job=app .*state=stopped trigger=api `));

    const asked = await api.call<Run>('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', { repo: 'repo', job: 'app' }, {}, 202);
    await api.midway(asked.id);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      server.proc.on('exit', (code, signal) => resolve({ code, signal })),
    );
    const termAt = Date.now();
    server.proc.kill('SIGTERM');
    const how = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 15_000))]);
    const seconds = (Date.now() - termAt) / 1000;
    assert.notEqual(how, 'late', `serve did not exit within 15 s of SIGTERM:\n${server.log()}`);
    assert.deepEqual(how, { code: 0, signal: null }, server.log());
    assert.ok(seconds < 5, `serve took ${seconds} s to exit`);
    t.diagnostic(`serve exited ${seconds.toFixed(2)} s after SIGTERM`);
    assert.match(server.stderr(), new RegExp(`<4>lifeboat run=${asked.id} job=app .*state=interrupted trigger=api .*code=LFB_ERR_INTERRUPTED`));

    // Nothing is left behind (the run stopped at a safe point), nor locked: a backup by hand right after goes through.
    assert.deepEqual(await readdir(join(repo, 'jobs', 'app')), ['job.json']);
    const made = JSON.parse(await lifeboat(['backup', 'app', '--repo', repo, '--json'])) as { pointId: string; kind: string };
    assert.equal(made.kind, 'full');

    // The catalog says so too, after a restart (no retry: a person asked for that run).
    const again = await servers.start(repo);
    const api2 = await Api.connect(again.httpUrl, token);
    const run = (await api2.run(asked.id)).run;
    assert.equal(run.state, 'interrupted');
    assert.equal(run.errorCode, 'LFB_ERR_INTERRUPTED');
    assert.equal(run.pointId, null);
    assert.deepEqual(
      (await api2.runs('app')).map((r) => [r.id, r.state]),
      [
        [first.id, 'stopped'],
        [asked.id, 'interrupted'],
      ],
    );
    const restored = join(dir, 'restored.img');
    await lifeboat(['restore', 'app', '--repo', repo, '--point', made.pointId, '--to', restored, '--format', 'raw']);
    assert.equal(await sha256File(restored), await sha256File(disk));
  },
);

test('serve --no-scheduler: runs asked for run, no job runs by its schedule, and a run a killed server left is marked interrupted', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-nosched-');
  const repo = join(dir, 'repo');
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), writeTextDisk(join(dir, 'big.img'), LONG_RUN_MIB), writeTextDisk(join(dir, 'often.img'), 1)]);
  await lifeboat(['job', 'create', 'big', '--repo', repo, '--disk', join(dir, 'big.img')]);
  await lifeboat(['job', 'create', 'often', '--repo', repo, '--disk', join(dir, 'often.img'), '--schedule', '*/2 * * * * *']);
  let server = await servers.start(repo, ['--no-scheduler']);
  let api = await Api.connect(server.httpUrl, token);

  const killed = await api.call<Run>('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', { repo: 'repo', job: 'big' }, {}, 202);
  await api.midway(killed.id);
  await kill9(server);

  server = await servers.start(repo, ['--no-scheduler']);
  api = await Api.connect(server.httpUrl, token);
  const left = (await api.run(killed.id)).run;
  assert.equal(left.state, 'interrupted', 'the run the killed server left is interrupted');
  assert.equal(left.errorCode, 'LFB_ERR_INTERRUPTED');
  // The job runs again when asked (the old run holds nothing).
  const asked = await api.call<Run>('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', { repo: 'repo', job: 'big' }, {}, 202);
  const done = await waitFor(
    'the run asked for to end',
    60_000,
    async () => {
      const r = (await api.run(asked.id)).run;
      return ended(r) ? r : undefined;
    },
    250,
  );
  assert.equal(done.state, 'succeeded', `${done.errorCode} ${done.errorMessage}`);
  // Its schedule fired every two seconds all along: no run of it, not even one "missed".
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(await api.runs('often'), []);
  assert.deepEqual(
    (await api.runs('big')).map((r) => [r.id, r.trigger, r.state]),
    [
      [killed.id, 'api', 'interrupted'],
      [asked.id, 'api', 'succeeded'],
    ],
  );
});

test('a schedule missed while serve was down runs once at the next start, unless its window is closed by then', CASE, async (t) => {
  const { dir, servers } = await scenario(t, 'lifeboat-e2e-missed-');
  const repo = join(dir, 'repo');
  const disk = join(dir, 'late.img');
  await lifeboat(['repo', 'init', repo]);
  const [token] = await Promise.all([adminToken(repo), writeTextDisk(disk, 1)]);
  // A window that opens in two hours: closed now and when the missed fire is found.
  const hour = new Date().getHours();
  const closed = `${(hour + 2) % 24}:00-${(hour + 3) % 24}:00`;
  await lifeboat(['job', 'create', 'late', '--repo', repo, '--disk', disk]);
  await lifeboat(['job', 'create', 'shut', '--repo', repo, '--disk', disk, '--window', closed]);
  const first = await servers.start(repo);
  const exited = new Promise<number | null>((resolve) => first.proc.on('exit', (code) => resolve(code)));
  first.proc.kill('SIGTERM');
  assert.equal(await exited, 0);

  // Scheduled while the server is down, to fire before it starts again (the server saw the time last when it stopped).
  const fire = oncePerMinuteAt(2500);
  await Promise.all(['late', 'shut'].map((job) => lifeboat(['job', 'set', job, '--repo', repo, '--schedule', fire.cron])));
  await new Promise((r) => setTimeout(r, Math.max(0, fire.at + 500 - Date.now())));
  const server = await servers.start(repo);
  const api = await Api.connect(server.httpUrl, token);
  const run = await waitFor('the missed run to end', 30_000, async () => {
    const r = (await api.runs('late'))[0];
    return r !== undefined && ended(r) ? r : undefined;
  });
  assert.equal(run.trigger, 'missed');
  assert.equal(run.state, 'succeeded', `${run.errorCode} ${run.errorMessage}`);
  assert.ok(Date.parse(run.queuedAt) > fire.at);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await api.runs('late')).length, 1, 'one run for the missed fire');
  assert.deepEqual(await api.runs('shut'), [], 'a missed fire outside its window is dropped');
});
