/**
 * Instant-recovery sessions through the HTTP API (inject; the sessions are
 * published on the in-process datastore, no NFS or NBD port is opened):
 * start, list, add a disk, migrate with progress as Server-Sent Events,
 * stop. Every response is validated against the served OpenAPI document.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OpenApiValidator, makeFixture, parseEvents, type Fixture, createWeb01 } from './http-api-fixture.js';

let fx: Fixture;
let doc: OpenApiValidator;

before(async () => {
  fx = await makeFixture();
  doc = await OpenApiValidator.fetch(fx.api);
});
after(async () => {
  await fx?.close();
});

interface SessionView {
  name: string;
  repo: string;
  pointId: string;
  disks: { name: string; size: number }[];
  migration?: { state: string; disks: { name: string; target: string; copied: number }[] };
}

test('a session started, listed, given a disk, migrated (followed as events to the end) and stopped through the API', async () => {
  const operator = { authorization: `Bearer ${fx.tokens.operator}` };
  const viewer = { authorization: `Bearer ${fx.tokens.viewer}` };
  await createWeb01(fx);
  const run = (await fx.api.inject({ method: 'POST', url: `/api/v1/repositories/${fx.repoName}/jobs/web01/run`, headers: operator })).json<{ id: number }>();
  await fx.runner.ended(run.id);
  const pointId = (await fx.catalog.getRun(run.id)).pointId;
  assert.ok(pointId);

  const start = await fx.api.inject({
    method: 'POST',
    url: '/api/v1/sessions',
    headers: operator,
    payload: { repo: fx.repoName, job: 'web01', name: 'web01-ir' },
  });
  assert.equal(start.statusCode, 201, start.body);
  const s = doc.check('POST', '/api/v1/sessions', start) as SessionView;
  assert.deepEqual([s.name, s.repo, s.pointId, s.disks.length], ['web01-ir', fx.repoName, pointId, 1]);

  // A -nic setting beyond none and isolated (a tap runs its script as the server's user) is for admins.
  const tap = await fx.api.inject({
    method: 'POST',
    url: '/api/v1/sessions',
    headers: operator,
    payload: { repo: fx.repoName, job: 'web01', name: 'web01-vm', boot: { network: 'tap,script=/tmp/x.sh' } },
  });
  assert.equal(tap.statusCode, 403);
  assert.equal((doc.check('POST', '/api/v1/sessions', tap) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
  const dup = await fx.api.inject({
    method: 'POST',
    url: '/api/v1/sessions',
    headers: operator,
    payload: { repo: fx.repoName, job: 'web01', name: 'web01-ir' },
  });
  assert.equal(dup.statusCode, 409);
  assert.equal((doc.check('POST', '/api/v1/sessions', dup) as { code: string }).code, 'LFB_ERR_SESSION_EXISTS');

  const list = doc.check('GET', '/api/v1/sessions', await fx.api.inject({ method: 'GET', url: '/api/v1/sessions', headers: viewer })) as {
    sessions: SessionView[];
  };
  assert.deepEqual(
    list.sessions.map((x) => x.name),
    ['web01-ir'],
  );

  // Client I/O is counted per disk (the console's read and write rates) and the overlays' free space is given (its near-full alert).
  const overlay = fx.recovery.session('web01-ir').overlays[0]!;
  const head = await overlay.read(0, 8192);
  // The point's own bytes written back: the migration below still copies the point, byte for byte.
  await overlay.write(4096, Buffer.from(head.subarray(4096, 4096 + 512)));
  const counted = doc.check('GET', '/api/v1/sessions', await fx.api.inject({ method: 'GET', url: '/api/v1/sessions', headers: viewer })) as {
    sessions: (SessionView & {
      disks: { io: { readBytes: number; writtenBytes: number } }[];
      overlayFreeBytes: number | null;
      overlayTotalBytes: number | null;
    })[];
  };
  assert.deepEqual(counted.sessions[0]!.disks[0]!.io, { readBytes: 8192, writtenBytes: 512 });
  const { overlayFreeBytes: free, overlayTotalBytes: total } = counted.sessions[0]!;
  assert.ok(free !== null && total !== null && free > 0 && free <= total, `overlay space ${free} of ${total}`);
  // The caches of decoded blocks, per repository: the read above missed the memory cache and went to the disk cache.
  const { caches } = doc.check('GET', '/api/v1/sessions', await fx.api.inject({ method: 'GET', url: '/api/v1/sessions', headers: viewer })) as {
    caches: { repo: string; memory: { misses: number; budgetBytes: number }; disk: { dir: string; misses: number; budgetBytes: number } | null }[];
  };
  assert.equal(caches.length, 1);
  assert.ok(caches[0]!.memory.misses >= 1 && caches[0]!.memory.budgetBytes > 0, JSON.stringify(caches[0]));
  assert.ok(caches[0]!.disk !== null && caches[0]!.disk.misses >= 1 && caches[0]!.disk.dir.endsWith('/cache/blocks'), JSON.stringify(caches[0]));

  const added = await fx.api.inject({
    method: 'POST',
    url: '/api/v1/sessions/web01-ir/disks',
    headers: operator,
    payload: { size: 1024 * 1024, name: 'scratch' },
  });
  const a = doc.check('POST', '/api/v1/sessions/{name}/disks', added) as SessionView;
  assert.deepEqual(
    a.disks.map((d) => [d.name, d.size]),
    [
      [s.disks[0]!.name, 3 * 1024 * 1024],
      ['scratch', 1024 * 1024],
    ],
  );
  const badSize = await fx.api.inject({ method: 'POST', url: '/api/v1/sessions/web01-ir/disks', headers: operator, payload: { size: 1000 } });
  assert.equal(badSize.statusCode, 422);
  doc.check('POST', '/api/v1/sessions/{name}/disks', badSize);

  const to = join(fx.dir, 'production');
  await mkdir(to);
  const outside = await fx.api.inject({ method: 'POST', url: '/api/v1/sessions/web01-ir/migrate', headers: operator, payload: { to: fx.dir } });
  assert.equal(outside.statusCode, 403, 'operators migrate only into the target folders');
  assert.equal((doc.check('POST', '/api/v1/sessions/{name}/migrate', outside) as { code: string }).code, 'LFB_ERR_FORBIDDEN');
  const migrating = await fx.api.inject({ method: 'POST', url: '/api/v1/sessions/web01-ir/migrate', headers: operator, payload: { to, format: 'raw' } });
  const m = doc.check('POST', '/api/v1/sessions/{name}/migrate', migrating) as SessionView;
  assert.equal(m.migration?.disks.length, 2);
  // The stream ends when the migration is done; the final pass is asked for meanwhile.
  const events = fx.api.inject({ method: 'GET', url: '/api/v1/sessions/web01-ir/events', headers: viewer });
  const finished = await fx.api.inject({ method: 'POST', url: '/api/v1/sessions/web01-ir/migrate', headers: operator, payload: { finish: true } });
  const f = doc.check('POST', '/api/v1/sessions/{name}/migrate', finished) as SessionView;
  assert.equal(f.migration?.state, 'done', finished.body);
  const stream = await events;
  assert.equal(stream.statusCode, 200);
  const parsed = parseEvents(stream.body);
  assert.deepEqual(parsed.at(-1), { event: 'end', data: { name: 'web01-ir', state: 'done' } }, stream.body);
  const states = parsed.filter((e) => e.event === 'session').map((e) => (e.data as SessionView).migration?.state);
  assert.equal(states.at(-1), 'done');
  const target = f.migration!.disks[0]!.target;
  assert.ok((await readFile(target)).equals(await readFile(fx.source)), 'the migrated disk is the point, byte for byte');

  const stopped = await fx.api.inject({ method: 'DELETE', url: '/api/v1/sessions/web01-ir', headers: operator });
  assert.equal(stopped.statusCode, 204);
  doc.check('DELETE', '/api/v1/sessions/{name}', stopped);
  const gone = await fx.api.inject({ method: 'GET', url: '/api/v1/sessions/web01-ir', headers: viewer });
  assert.equal(gone.statusCode, 404);
  assert.equal((doc.check('GET', '/api/v1/sessions/{name}', gone) as { code: string }).code, 'LFB_ERR_SESSION_NOT_FOUND');
  const noStream = await fx.api.inject({ method: 'GET', url: '/api/v1/sessions/web01-ir/events', headers: viewer });
  assert.equal(noStream.statusCode, 404);
  doc.check('GET', '/api/v1/sessions/{name}/events', noStream);
});
