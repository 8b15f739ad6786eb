/**
 * The HTTP API through fastify's inject (no listening socket): the OpenAPI
 * document, authentication and roles on every route of it, errors, and a
 * job created, backed up, listed, verified and restored through the API,
 * every response validated against the served document.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository, JOB_LOCK } from '../src/repository/index.js';
import { LockFile } from '../src/storage/index.js';
import { OpenApiValidator, PASSWORD, fill, makeFixture, parseEvents, type Fixture } from './http-api-fixture.js';

let fx: Fixture;
let doc: OpenApiValidator;

before(async () => {
  fx = await makeFixture();
  doc = await OpenApiValidator.fetch(fx.api);
});
after(async () => {
  await fx?.close();
});

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** Path values that name nothing that exists: every route answers before doing anything. */
const NOWHERE = { repo: 'backups', job: 'no-such-job', id: '999999', name: 'no-such-session', index: '0', point: 'latest' };
/** The routes anyone may call. */
const PUBLIC = ['GET /api/v1/openapi.json', 'POST /api/v1/login'];
/** Changes a viewer may make: only ending their own login. */
const VIEWER_MAY_CHANGE = ['POST /api/v1/logout'];
/** Reads a viewer may not make: the VM's screen carries keys and clicks to the VM. */
const OPERATOR_READS = ['GET /api/v1/sessions/{name}/screen'];

test('GET /api/v1/openapi.json: an OpenAPI 3.1 document, without authentication, every operation with responses and the error schema', async () => {
  const served = await fx.api.inject({ method: 'GET', url: '/api/v1/openapi.json' });
  assert.equal(served.headers['cache-control'], 'no-store');
  assert.equal(served.headers['x-content-type-options'], 'nosniff');
  const d = doc.doc as unknown as { openapi: string; components: { schemas: Record<string, unknown> } };
  assert.equal(d.openapi, '3.1.0');
  assert.ok('Error' in d.components.schemas);
  const ops = doc.operations();
  assert.ok(ops.length >= 25, `only ${ops.length} operations`);
  for (const [method, path] of ops) {
    const op = doc.doc.paths[path]![method.toLowerCase()]!;
    assert.ok('4XX' in op.responses && '5XX' in op.responses, `${method} ${path} lists no error responses`);
    assert.ok(typeof op['x-lifeboat-role'] === 'string', `${method} ${path} says no role`);
    // Every JSON response schema compiles (its $refs resolve inside the document).
    for (const status of Object.keys(op.responses)) if (op.responses[status]!.content?.['application/json']) assert.ok(doc.schemaOf(method, path, status));
  }
});

test('every route of the document: 401 without credentials, except the document and login (and no other route is public)', async () => {
  const publicInDoc = doc
    .operations()
    .filter(([m, p]) => (doc.doc.paths[p]![m.toLowerCase()]!.security ?? [{}]).length === 0)
    .map(([m, p]) => `${m} ${p}`);
  assert.deepEqual(publicInDoc.sort(), [...PUBLIC].sort());
  for (const [method, path] of doc.operations()) {
    if (PUBLIC.includes(`${method} ${path}`)) continue;
    for (const headers of [{}, bearer('lfb_nope_nope'), { cookie: 'lifeboat_session=forged' }]) {
      const res = await fx.api.inject({ method: method as 'GET', url: fill(path, NOWHERE), headers, ...(method === 'GET' ? {} : { payload: {} }) });
      assert.equal(res.statusCode, 401, `${method} ${path} with ${JSON.stringify(headers)}: ${res.statusCode} ${res.body}`);
      const body = doc.check(method, path, res) as { code: string };
      assert.equal(body.code, 'LFB_ERR_UNAUTHENTICATED');
    }
  }
});

test('every route that changes something: 403 for a viewer; every admin route: 403 for an operator; reads pass for a viewer', async () => {
  let checked = 0;
  for (const [method, path] of doc.operations()) {
    const op = `${method} ${path}`;
    if (PUBLIC.includes(op)) continue;
    const role = doc.doc.paths[path]![method.toLowerCase()]!['x-lifeboat-role'];
    const send = async (token: string) =>
      fx.api.inject({ method: method as 'GET', url: fill(path, NOWHERE), headers: bearer(token), ...(method === 'GET' ? {} : { payload: {} }) });
    if (method === 'GET' && !OPERATOR_READS.includes(op)) {
      assert.equal(role, 'viewer', `${op} reads, so viewers may call it`);
      const res = await send(fx.tokens.viewer);
      assert.ok(res.statusCode !== 401 && res.statusCode !== 403, `${op} refused a viewer: ${res.body}`);
      doc.check(method, path, res);
      continue;
    }
    if (VIEWER_MAY_CHANGE.includes(op)) continue;
    const res = await send(fx.tokens.viewer);
    assert.equal(res.statusCode, 403, `${op} as viewer: ${res.statusCode} ${res.body}`);
    assert.equal((doc.check(method, path, res) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
    checked++;
    if (role === 'admin') {
      const asOperator = await send(fx.tokens.operator);
      assert.equal(asOperator.statusCode, 403, `${op} as operator: ${asOperator.statusCode} ${asOperator.body}`);
    }
  }
  assert.ok(checked >= 12, `only ${checked} changing routes`);
});

test("a mover's token: 403 on every route but a data mover's own three, which are the only routes of role mover; no console login", async () => {
  const MOVER_ROUTES = ['POST /api/v1/movers/{name}/poll', 'POST /api/v1/movers/{name}/tasks/{id}/progress', 'POST /api/v1/movers/{name}/tasks/{id}/result'];
  const ofRoleMover: string[] = [];
  for (const [method, path] of doc.operations()) {
    const op = `${method} ${path}`;
    if (PUBLIC.includes(op)) continue;
    if (doc.doc.paths[path]![method.toLowerCase()]!['x-lifeboat-role'] === 'mover') ofRoleMover.push(op);
    if (MOVER_ROUTES.includes(op)) continue;
    const res = await fx.api.inject({
      method: method as 'GET',
      url: fill(path, NOWHERE),
      headers: bearer(fx.tokens.mover),
      ...(method === 'GET' ? {} : { payload: {} }),
    });
    assert.equal(res.statusCode, 403, `${op} as a mover: ${res.statusCode} ${res.body}`);
    assert.equal((doc.check(method, path, res) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
  }
  assert.deepEqual(ofRoleMover.sort(), [...MOVER_ROUTES].sort());
  const login = await fx.api.inject({ method: 'POST', url: '/api/v1/login', payload: { user: 'mover', password: PASSWORD } });
  assert.equal(login.statusCode, 403, login.body);
});

test('bad input is 422 {code, message}; unknown routes 404 in the same shape', async () => {
  const admin = bearer(fx.tokens.admin);
  const jobs = '/api/v1/repositories/{repo}/jobs';
  const cases: { method: 'GET' | 'POST' | 'PATCH'; path: string; url: string; payload?: unknown; headers?: Record<string, string> }[] = [
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: [fx.source], retainPoints: 0 } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: [fx.source], surprise: true } },
    // JSON bodies are not coerced: a string is not a number, null is not 0, a string is not a list.
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: [fx.source], retainPoints: '5' } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: [fx.source], retries: null } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: fx.source } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: '../etc', disks: [fx.source] } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: { name: 'x', disks: [fx.source], retainPoints: 3, retainDays: 3 } },
    { method: 'POST', path: jobs, url: fill(jobs, NOWHERE), payload: '{"name": ', headers: { 'content-type': 'application/json' } },
    { method: 'GET', path: '/api/v1/runs', url: '/api/v1/runs?limit=abc' },
    { method: 'GET', path: '/api/v1/runs', url: '/api/v1/runs?state=sleeping' },
    { method: 'GET', path: '/api/v1/runs', url: '/api/v1/runs?since=yesterday' },
    { method: 'GET', path: '/api/v1/runs/{id}', url: '/api/v1/runs/abc' },
    { method: 'PATCH', path: '/api/v1/repositories/{repo}/jobs/{job}', url: fill('/api/v1/repositories/{repo}/jobs/{job}', NOWHERE), payload: {} },
  ];
  for (const c of cases) {
    const res = await fx.api.inject({
      method: c.method,
      url: c.url,
      headers: { ...admin, ...c.headers },
      ...(c.payload === undefined ? {} : { payload: c.payload as string }),
    });
    assert.equal(res.statusCode, 422, `${c.method} ${c.url} ${JSON.stringify(c.payload)}: ${res.statusCode} ${res.body}`);
    const body = doc.check(c.method, c.path, res) as { code: string; message: string };
    assert.equal(body.code, 'LFB_ERR_INVALID_ARGUMENT');
    assert.ok(body.message.length > 0);
  }
  for (const [method, url] of [
    ['GET', '/api/v1/nothing'],
    ['DELETE', '/api/v1/runs'],
    ['GET', '/elsewhere'],
  ] as const) {
    const res = await fx.api.inject({ method, url, headers: admin });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(Object.keys(res.json()).sort(), ['code', 'message']);
    assert.equal(res.json().code, 'LFB_ERR_ROUTE_NOT_FOUND');
  }
  const missing = await fx.api.inject({ method: 'GET', url: '/api/v1/repositories/elsewhere', headers: admin });
  assert.equal(missing.statusCode, 404);
  assert.equal((doc.check('GET', '/api/v1/repositories/{repo}', missing) as { code: string }).code, 'LFB_ERR_REPO_NOT_FOUND');
});

test('a job created, backed up and restored through the API: the restore is byte-exact; runs, points, plan, verify and usage validate', async () => {
  const admin = bearer(fx.tokens.admin);
  const operator = bearer(fx.tokens.operator);
  const viewer = bearer(fx.tokens.viewer);
  const J = { repo: fx.repoName, job: 'web01' };

  const created = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs', J),
    headers: admin,
    payload: { name: 'web01', disks: [fx.source], retainPoints: 5, gfs: { weekly: 2, monthly: 0, yearly: 0 } },
  });
  assert.equal(created.statusCode, 201, created.body);
  const job = doc.check('POST', '/api/v1/repositories/{repo}/jobs', created) as { job: { name: string; method: string; disks: string[] } };
  assert.equal(job.job.name, 'web01');
  assert.equal(job.job.method, 'forever');
  assert.deepEqual(job.job.disks, [fx.source]);
  assert.equal((await fx.catalog.listJobs(fx.repo)).map((j) => j.name).join(), 'web01', 'the catalog has the new job');

  const again = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs', J),
    headers: admin,
    payload: { name: 'web01', disks: [fx.source] },
  });
  assert.equal(again.statusCode, 409);
  assert.equal((doc.check('POST', '/api/v1/repositories/{repo}/jobs', again) as { code: string }).code, 'LFB_ERR_JOB_EXISTS');

  // Two runs: a full, then an increment after a change in the source.
  const pointIds: string[] = [];
  const contents = [await readFile(fx.source)];
  for (let i = 0; i < 2; i++) {
    const started = await fx.api.inject({ method: 'POST', url: fill('/api/v1/repositories/{repo}/jobs/{job}/run', J), headers: operator });
    assert.equal(started.statusCode, 202, started.body);
    const run = doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', started) as { id: number; trigger: string; repoName: string };
    assert.deepEqual([run.trigger, run.repoName], ['api', fx.repoName]);
    // The event stream ends when the run does: its payload is every event.
    const events = await fx.api.inject({ method: 'GET', url: `/api/v1/runs/${run.id}/events`, headers: viewer });
    assert.equal(events.statusCode, 200);
    assert.match(String(events.headers['content-type']), /^text\/event-stream/);
    const parsed = parseEvents(events.body);
    const end = parsed.find((e) => e.event === 'end');
    assert.deepEqual(end?.data, { id: run.id, state: 'succeeded' }, events.body);
    assert.ok(
      parsed.some((e) => e.event === 'log' && /^made (full|increment)/.test((e.data as { message: string }).message)),
      'the log lines came as events',
    );
    const detail = await fx.api.inject({ method: 'GET', url: `/api/v1/runs/${run.id}`, headers: viewer });
    const d = doc.check('GET', '/api/v1/runs/{id}', detail) as { run: { state: string; pointId: string; bytesRead: number }; log: { message: string }[] };
    assert.equal(d.run.state, 'succeeded');
    assert.ok(d.run.bytesRead > 0);
    assert.equal(d.log.length, 2);
    pointIds.push(d.run.pointId);
    if (i === 0) {
      const changed = Buffer.from(contents[0]!);
      changed.fill(7, 0, 4096);
      changed.fill(9, 2 * 1024 * 1024 - 100, 2 * 1024 * 1024 + 100);
      await writeFile(fx.source, changed);
      contents.push(changed);
    }
  }

  const runs = await fx.api.inject({ method: 'GET', url: `/api/v1/runs?repo=${fx.repoName}&job=web01&state=succeeded&limit=1`, headers: viewer });
  const page1 = doc.check('GET', '/api/v1/runs', runs) as { runs: { id: number }[]; next: number | null };
  assert.equal(page1.runs.length, 1);
  assert.notEqual(page1.next, null);
  const page2 = doc.check(
    'GET',
    '/api/v1/runs',
    await fx.api.inject({ method: 'GET', url: `/api/v1/runs?job=web01&limit=1&before=${page1.next}`, headers: viewer }),
  ) as {
    runs: { id: number }[];
  };
  assert.equal(page2.runs.length, 1);
  assert.ok(page2.runs[0]!.id < page1.runs[0]!.id, 'newest first, the next page older');

  const pts = await fx.api.inject({ method: 'GET', url: fill('/api/v1/repositories/{repo}/jobs/{job}/points', J), headers: viewer });
  const list = doc.check('GET', '/api/v1/repositories/{repo}/jobs/{job}/points', pts) as {
    points: { id: string; kind: string; health: string; changeMethod: string; gfs: string[]; storedBytes: number; diskBytes: number; chainId: string }[];
  };
  assert.deepEqual(
    list.points.map((p) => p.id),
    pointIds,
  );
  assert.deepEqual(
    list.points.map((p) => [p.kind, p.health, p.changeMethod]),
    [
      ['full', 'ok', 'full'],
      ['increment', 'ok', 'hash'],
    ],
  );
  assert.deepEqual(list.points[0]!.gfs, ['weekly'], 'the full is this week’s GFS full');
  assert.equal(list.points[0]!.diskBytes, 3 * 1024 * 1024);
  assert.ok(list.points[1]!.storedBytes < list.points[0]!.storedBytes, 'the increment stores less than the full');
  assert.equal(list.points[0]!.chainId, list.points[1]!.chainId);
  assert.equal((await fx.catalog.listPoints(fx.repo, 'web01')).length, 2, 'the catalog has the points read');

  const plan = await fx.api.inject({ method: 'GET', url: fill('/api/v1/repositories/{repo}/jobs/{job}/retention-plan', J), headers: viewer });
  const p = doc.check('GET', '/api/v1/repositories/{repo}/jobs/{job}/retention-plan', plan) as { actions: unknown[]; kept: { id: string }[] };
  assert.deepEqual(p.actions, []);
  assert.deepEqual(p.kept.map((k) => k.id).sort(), [...pointIds].sort());

  const verified = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}/verify', J),
    headers: operator,
    payload: { all: true },
  });
  const v = doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/verify', verified) as { ok: boolean; points: string[]; problems: unknown[] };
  assert.equal(v.ok, true);
  assert.deepEqual(v.problems, []);
  assert.equal(v.points.length, 2);

  const out = join(fx.dir, 'restored');
  await mkdir(out);
  for (const [i, id] of pointIds.entries()) {
    const restored = await fx.api.inject({
      method: 'POST',
      url: fill('/api/v1/repositories/{repo}/jobs/{job}/restore', J),
      headers: operator,
      payload: { point: id, to: join(out, `p${i}.raw`) },
    });
    const r = doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/restore', restored) as { pointId: string; targets: { path: string }[] };
    assert.equal(r.pointId, id);
    const got = await readFile(r.targets[0]!.path);
    assert.equal(got.length, contents[i]!.length);
    assert.ok(got.equals(contents[i]!), `point ${i} restores byte-exact`);
  }
  // Operators write only into the server's target folders, also through a link that leads out; admins anywhere.
  await symlink(fx.dir, join(out, 'escape'));
  for (const to of [join(fx.dir, 'elsewhere.raw'), join(out, 'escape', 'elsewhere.raw'), join(out, '..', 'elsewhere.raw')]) {
    const refused = await fx.api.inject({ method: 'POST', url: fill('/api/v1/repositories/{repo}/jobs/{job}/restore', J), headers: operator, payload: { to } });
    assert.equal(refused.statusCode, 403, `${to}: ${refused.body}`);
    assert.equal((doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/restore', refused) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
  }
  const byAdmin = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}/restore', J),
    headers: admin,
    payload: { to: join(fx.dir, 'elsewhere.raw') },
  });
  assert.equal(byAdmin.statusCode, 200, byAdmin.body);
  assert.ok((await readFile(join(fx.dir, 'elsewhere.raw'))).equals(contents[1]!));
  const exists = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs/{job}/restore', J),
    headers: operator,
    payload: { to: join(out, 'p1.raw') },
  });
  assert.equal(exists.statusCode, 409);
  assert.equal((doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/restore', exists) as { code: string }).code, 'LFB_ERR_TARGET_EXISTS');

  const usage = await fx.api.inject({ method: 'GET', url: '/api/v1/repositories', headers: viewer });
  const u = doc.check('GET', '/api/v1/repositories', usage) as {
    repositories: { name: string; jobs: { name: string; points: number; bytes: number }[]; freeBytes: number }[];
  };
  assert.equal(u.repositories[0]!.name, fx.repoName);
  assert.deepEqual(
    u.repositories[0]!.jobs.map((j) => [j.name, j.points]),
    [['web01', 2]],
  );
  assert.equal(
    u.repositories[0]!.jobs[0]!.bytes,
    list.points.reduce((a, pt) => a + pt.storedBytes, 0),
  );
  assert.ok(u.repositories[0]!.freeBytes > 0);
});

test('console login: an HttpOnly SameSite=Strict cookie (not Secure over plain HTTP) and a CSRF token that changes need; logout ends it', async () => {
  const wrong = await fx.api.inject({ method: 'POST', url: '/api/v1/login', payload: { user: 'operator', password: 'not the password' } });
  assert.equal(wrong.statusCode, 401);
  assert.equal((doc.check('POST', '/api/v1/login', wrong) as { code: string }).code, 'LFB_ERR_UNAUTHENTICATED');
  assert.equal(wrong.headers['set-cookie'], undefined);

  const login = await fx.api.inject({ method: 'POST', url: '/api/v1/login', payload: { user: 'operator', password: PASSWORD } });
  const body = doc.check('POST', '/api/v1/login', login) as { user: string; role: string; csrfToken: string; expiresAt: string };
  assert.equal(body.role, 'operator');
  const setCookie = String(login.headers['set-cookie']);
  assert.match(setCookie, /^lifeboat_session=[^;]+;/);
  assert.match(setCookie, /; HttpOnly/);
  assert.match(setCookie, /; SameSite=Strict/);
  assert.doesNotMatch(setCookie, /Secure/);
  const cookie = setCookie.split(';')[0]!;

  const me = await fx.api.inject({ method: 'GET', url: '/api/v1/me', headers: { cookie } });
  // The console reads its CSRF token back after a reload (the cookie itself is out of its reach).
  assert.deepEqual(doc.check('GET', '/api/v1/me', me), {
    user: 'operator',
    role: 'operator',
    via: 'cookie',
    csrfToken: body.csrfToken,
    expiresAt: body.expiresAt,
  });
  const byToken = await fx.api.inject({ method: 'GET', url: '/api/v1/me', headers: bearer(fx.tokens.viewer) });
  assert.deepEqual(doc.check('GET', '/api/v1/me', byToken), { user: 'viewer', role: 'viewer', via: 'token' });
  // A change with the cookie alone (what a forged cross-site form sends) is refused.
  const url = '/api/v1/repositories/backups/jobs/no-such-job/run';
  const forged = await fx.api.inject({ method: 'POST', url, headers: { cookie } });
  assert.equal(forged.statusCode, 403);
  assert.equal((doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', forged) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
  const withCsrf = await fx.api.inject({ method: 'POST', url, headers: { cookie, 'x-csrf-token': body.csrfToken } });
  assert.equal(withCsrf.statusCode, 404, 'authorized: the job does not exist');
  assert.equal((doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', withCsrf) as { code: string }).code, 'LFB_ERR_JOB_NOT_FOUND');

  const logout = await fx.api.inject({ method: 'POST', url: '/api/v1/logout', headers: { cookie, 'x-csrf-token': body.csrfToken } });
  assert.equal(logout.statusCode, 204);
  doc.check('POST', '/api/v1/logout', logout);
  assert.match(String(logout.headers['set-cookie']), /^lifeboat_session=; .*Max-Age=0/);
  const after = await fx.api.inject({ method: 'GET', url: '/api/v1/me', headers: { cookie } });
  assert.equal(after.statusCode, 401);
});

test('failed logins are rate limited: 429 with Retry-After, from that address and for that name', async () => {
  const attempt = (remoteAddress: string, user: string) =>
    fx.api.inject({ method: 'POST', url: '/api/v1/login', remoteAddress, payload: { user, password: 'guess guess' } });
  const codes: number[] = [];
  for (let i = 0; i < 6; i++) codes.push((await attempt('192.0.2.7', 'admin')).statusCode);
  assert.deepEqual(codes, [401, 401, 401, 401, 401, 429]);
  const limited = await attempt('192.0.2.7', 'someone-else');
  assert.equal(limited.statusCode, 429);
  assert.equal((doc.check('POST', '/api/v1/login', limited) as { code: string }).code, 'LFB_ERR_RATE_LIMITED');
  assert.match(String(limited.headers['retry-after']), /^\d+$/);
  // The right password does not get through the lockout either.
  const right = await fx.api.inject({ method: 'POST', url: '/api/v1/login', remoteAddress: '192.0.2.7', payload: { user: 'viewer', password: PASSWORD } });
  assert.equal(right.statusCode, 429);
});

test('jobs: change (409 while the job is locked), list, stop a run, delete', async () => {
  const admin = bearer(fx.tokens.admin);
  const J = { repo: fx.repoName, job: 'db01' };
  const created = await fx.api.inject({
    method: 'POST',
    url: fill('/api/v1/repositories/{repo}/jobs', J),
    headers: admin,
    payload: { name: 'db01', disks: [fx.source], activeFullDays: ['sun'], schedule: '0 2 * * *', window: '01:00-05:00' },
  });
  const c = doc.check('POST', '/api/v1/repositories/{repo}/jobs', created) as { job: { method: string; schedule: string }; warnings: string[] };
  assert.equal(c.job.method, 'forward', "job create's default with a full day");
  assert.equal(c.job.schedule, '0 2 * * *');

  const jobUrl = fill('/api/v1/repositories/{repo}/jobs/{job}', J);
  const repo = await Repository.open(fx.repo);
  const lock = await LockFile.acquire(join(repo.jobDir('db01'), JOB_LOCK), 'a backup of db01 (test)');
  try {
    const locked = await fx.api.inject({ method: 'PATCH', url: jobUrl, headers: admin, payload: { retainPoints: 9 } });
    assert.equal(locked.statusCode, 409);
    assert.equal((doc.check('PATCH', '/api/v1/repositories/{repo}/jobs/{job}', locked) as { code: string }).code, 'LFB_ERR_JOB_LOCKED');
  } finally {
    await lock.release();
  }
  const changed = await fx.api.inject({ method: 'PATCH', url: jobUrl, headers: admin, payload: { retainPoints: 9, schedule: null, disabled: true } });
  const ch = doc.check('PATCH', '/api/v1/repositories/{repo}/jobs/{job}', changed) as {
    before: { retainPoints: number; schedule?: string };
    after: { retainPoints: number; schedule?: string; disabled?: boolean };
  };
  assert.equal(ch.before.retainPoints, 7);
  assert.equal(ch.after.retainPoints, 9);
  assert.equal(ch.before.schedule, '0 2 * * *');
  assert.equal(ch.after.schedule, undefined);
  assert.equal(ch.after.disabled, true);
  const cached = (await fx.catalog.listJobs(fx.repo)).find((j) => j.name === 'db01');
  assert.equal(cached?.definition['retainPoints'], 9, "the catalog's copy follows the change");

  const list = await fx.api.inject({ method: 'GET', url: fill('/api/v1/repositories/{repo}/jobs', J), headers: bearer(fx.tokens.viewer) });
  const l = doc.check('GET', '/api/v1/repositories/{repo}/jobs', list) as { jobs: { job: { name: string }; points: number; nextRunAt: string | null }[] };
  assert.ok(l.jobs.some((j) => j.job.name === 'db01' && j.points === 0 && j.nextRunAt === null));

  // A run while another writer holds the job's lock fails, and the catalog says why.
  const held = await LockFile.acquire(join(repo.jobDir('db01'), JOB_LOCK), 'a backup of db01 (test)');
  let runId: number;
  try {
    const run = await fx.api.inject({ method: 'POST', url: `${jobUrl}/run`, headers: bearer(fx.tokens.operator) });
    runId = (doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', run) as { id: number }).id;
    await fx.runner.ended(runId);
  } finally {
    await held.release();
  }
  const failed = doc.check('GET', '/api/v1/runs/{id}', await fx.api.inject({ method: 'GET', url: `/api/v1/runs/${runId}`, headers: admin })) as {
    run: { state: string; errorCode: string };
  };
  assert.deepEqual([failed.run.state, failed.run.errorCode], ['failed', 'LFB_ERR_JOB_LOCKED']);

  const stopEnded = await fx.api.inject({ method: 'POST', url: `/api/v1/runs/${runId}/stop`, headers: bearer(fx.tokens.operator) });
  assert.equal(stopEnded.statusCode, 422);
  assert.match((doc.check('POST', '/api/v1/runs/{id}/stop', stopEnded) as { message: string }).message, /already ended \(failed\)/);
  // A SureBackup job may have a backup job's name: its queued run is not this job's to stop, nor in its history.
  const sure = await fx.catalog.createRun({
    repo: fx.repo,
    job: 'db01',
    kind: 'surebackup',
    trigger: 'manual',
    attempt: 1,
    retryOf: null,
    queuedAt: new Date().toISOString(),
  });
  try {
    const stopNothing = await fx.api.inject({ method: 'POST', url: `${jobUrl}/stop`, headers: bearer(fx.tokens.operator) });
    assert.deepEqual(doc.check('POST', '/api/v1/repositories/{repo}/jobs/{job}/stop', stopNothing), { stopped: [] });
    assert.equal((await fx.catalog.getRun(sure.id)).state, 'queued');
    const ids = async (kind: string): Promise<number[]> => {
      const res = await fx.api.inject({ method: 'GET', url: `/api/v1/runs?repo=${fx.repoName}&job=db01&kind=${kind}`, headers: admin });
      return (doc.check('GET', '/api/v1/runs', res) as { runs: { id: number; kind: string }[] }).runs.map((r) => r.id);
    };
    assert.deepEqual(await ids('backup'), [runId]);
    assert.deepEqual(await ids('surebackup'), [sure.id]);
  } finally {
    await fx.catalog.updateRun(sure.id, { state: 'stopped', endedAt: new Date().toISOString() });
  }

  const deleted = await fx.api.inject({ method: 'DELETE', url: jobUrl, headers: admin });
  assert.deepEqual(doc.check('DELETE', '/api/v1/repositories/{repo}/jobs/{job}', deleted), { pointsDeleted: 0, filesDeleted: 0 });
  assert.equal(
    (await fx.catalog.listJobs(fx.repo)).find((j) => j.name === 'db01'),
    undefined,
  );
  const gone = await fx.api.inject({ method: 'GET', url: jobUrl, headers: admin });
  assert.equal(gone.statusCode, 404);
  assert.equal((doc.check('GET', '/api/v1/repositories/{repo}/jobs/{job}', gone) as { code: string }).code, 'LFB_ERR_JOB_NOT_FOUND');
});
