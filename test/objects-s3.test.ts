// The S3 object store on a real Ceph RADOS Gateway (one cluster for this file, a bucket per test):
// the conformance suite, object lock, stalled endpoints, the bound on requests in flight, error codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { ListObjectVersionsCommand, S3Client } from '@aws-sdk/client-s3';
import { S3ObjectStore, type S3StoreOptions } from '../src/objects/s3-object-store.js';
import { useCephS3 } from './ceph-fixture.js';
import { listAll, objectStoreConformance, rejectsWith } from './object-store-conformance.js';

const ceph = useCephS3();

const open = (bucket: string, options: S3StoreOptions = {}, prefix = 'repo'): Promise<S3ObjectStore> =>
  S3ObjectStore.open(`s3://${bucket}/${prefix}`, { connection: ceph().connection, ...options });

objectStoreConformance('ceph radosgw', () => open(ceph().bucket('conformance')));
// Object lock makes a bucket versioned, where radosgw ignores If-None-Match: create-only works otherwise there (s3-versions.ts).
objectStoreConformance('ceph radosgw, object-lock bucket', () => open(ceph().bucket('conformance-lock'), { objectLock: true }));

test('radosgw: listing pages (7 keys a page here) join into one sorted listing; prefixes of one bucket see only their own objects', async () => {
  const bucket = ceph().bucket('pages');
  const a = await open(bucket, { listPageSize: 7 }, 'a');
  const ab = await open(bucket, {}, 'ab');
  try {
    const names = Array.from({ length: 30 }, (_, i) => `k/${String(i).padStart(2, '0')}`);
    await Promise.all(names.map((n) => a.put(n, Buffer.from(n))));
    await ab.put('k/00', Buffer.from('other prefix'));
    assert.deepEqual(
      (await listAll(a, 'k/')).map((o) => o.name),
      names,
    );
    assert.deepEqual(
      (await listAll(ab, '')).map((o) => o.name),
      ['k/00'],
    );
    assert.equal((await a.get('k/00')).toString(), 'k/00');
    assert.equal(a.location, `s3://${bucket}/a/`);
  } finally {
    await a.close();
    await ab.close();
  }
});

function versionsOf(bucket: string, key: string): Promise<number> {
  const client = new S3Client({ ...ceph().connection, forcePathStyle: true });
  return client
    .send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }))
    .then((r) => [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])].filter((v) => v.Key === key).length)
    .finally(() => client.destroy());
}

test('radosgw object lock: an object put with COMPLIANCE retention cannot be deleted before its date (LFB_ERR_IMMUTABLE, the date in the message), and can after it', async () => {
  const bucket = ceph().bucket('lock');
  const store = await open(bucket, { objectLock: true });
  try {
    assert.equal(store.retention, true);
    const until = new Date(Date.now() + 8_000);
    await store.put('roots/1', Buffer.from('commit root'), { ifNoneMatch: '*', retainUntil: until });
    const head = await store.head('roots/1');
    assert.ok(Math.abs((head?.retainUntil?.getTime() ?? 0) - until.getTime()) < 1000, `the retention date is kept: ${head?.retainUntil?.toISOString()}`);
    const err = await rejectsWith(store.delete('roots/1'), 'LFB_ERR_IMMUTABLE');
    assert.match(err.message, /until \d{4}-\d\d-\d\dT/);
    assert.equal(err.details['mode'], 'COMPLIANCE');
    assert.equal((await store.get('roots/1')).toString(), 'commit root', 'still there, unchanged');
    await rejectsWith(store.put('roots/1', Buffer.from('x'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
    // Without retention, a delete on this (versioned) bucket removes every version, not only the current one.
    await store.put('free', Buffer.from('v1'));
    await store.put('free', Buffer.from('v2'));
    assert.equal(await versionsOf(bucket, 'repo/free'), 2);
    await store.delete('free');
    assert.equal(await versionsOf(bucket, 'repo/free'), 0, 'no version or delete marker left');
    await new Promise((r) => setTimeout(r, until.getTime() - Date.now() + 1500));
    await store.delete('roots/1');
    assert.equal(await store.head('roots/1'), undefined);
    assert.equal(await versionsOf(bucket, 'repo/roots/1'), 0);
  } finally {
    await store.close();
  }
});

test('radosgw object lock: asked of a bucket created without it, open fails with LFB_ERR_IMMUTABLE_UNSUPPORTED; so does a put with a retention date there', async () => {
  const bucket = ceph().bucket('nolock');
  const store = await open(bucket);
  try {
    assert.equal(store.retention, false);
    await rejectsWith(store.put('r', Buffer.from('x'), { retainUntil: new Date(Date.now() + 60_000) }), 'LFB_ERR_IMMUTABLE_UNSUPPORTED');
    assert.equal(await store.head('r'), undefined);
    await rejectsWith(open(bucket, { objectLock: true }), 'LFB_ERR_IMMUTABLE_UNSUPPORTED');
  } finally {
    await store.close();
  }
});

/** A TCP relay to radosgw that can freeze: while frozen it accepts and reads, and forwards and answers nothing. */
async function relay(target: number): Promise<{
  port: number;
  freeze(): void;
  /** Freezes once this many more bytes of answers have gone through (in the middle of a body). */
  freezeAfter(bytes: number): void;
  busy: Set<Socket>;
  state: { mostBusy: number };
  close(): Promise<void>;
}> {
  let frozen = false;
  // The most connections that held an unanswered request at once.
  const state: { mostBusy: number; answered: number; freezeAt?: number } = { mostBusy: 0, answered: 0 };
  const busy = new Set<Socket>();
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(target, '127.0.0.1');
    sockets.add(upstream);
    client.on('data', (d) => {
      if (!frozen) upstream.write(d);
      else {
        busy.add(client);
        state.mostBusy = Math.max(state.mostBusy, busy.size);
      }
    });
    upstream.on('data', (d) => {
      if (frozen) return;
      client.write(d);
      state.answered += d.length;
      if (state.freezeAt !== undefined && state.answered >= state.freezeAt) frozen = true;
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      busy.delete(client);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      frozen = true;
    },
    freezeAfter: (bytes) => {
      state.freezeAt = state.answered + bytes;
    },
    busy,
    state,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

test('a stalled endpoint: every call fails with LFB_ERR_STORE_TIMEOUT within its deadline, and never more than maxInFlight requests wait on it', async () => {
  const rgwPort = Number(new URL(ceph().endpoint).port);
  const r = await relay(rgwPort);
  const timeoutMs = 1500;
  const store = await S3ObjectStore.open(`s3://${ceph().bucket('stall')}/x`, {
    connection: { ...ceph().connection, endpoint: `http://127.0.0.1:${r.port}` },
    timeoutMs,
    maxInFlight: 3,
  });
  try {
    await store.put('o', Buffer.from('before the stall'));
    const big = Buffer.alloc(16 << 20, 7);
    await store.put('big', big);
    // Stalled in the middle of a body: 1 MiB of the 16 arrives, then nothing.
    r.freezeAfter(1 << 20);
    const started = Date.now();
    const err = await rejectsWith(store.get('big'), 'LFB_ERR_STORE_TIMEOUT', 'a body stalled half way');
    assert.ok(Date.now() - started < timeoutMs + 1500, `a body stalled half way: failed after ${Date.now() - started} ms`);
    assert.match(err.message, /sent nothing for 1\.5 s/);
    r.freeze();
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => store.get('o')],
      ['ranged get', () => store.get('o', { offset: 1, length: 3 })],
      ['head', () => store.head('o')],
      ['put', () => store.put('p', Buffer.alloc(3 << 20))],
      ['create-only put', () => store.put('q', Buffer.from('q'), { ifNoneMatch: '*' })],
      ['list', () => listAll(store, '')],
      ['delete', () => store.delete('o')],
    ];
    for (const [what, call] of calls) {
      const started = Date.now();
      const err = await rejectsWith(call(), 'LFB_ERR_STORE_TIMEOUT', what);
      const took = Date.now() - started;
      assert.ok(took >= timeoutMs - 50 && took < timeoutMs + 1500, `${what}: failed after ${took} ms (deadline ${timeoutMs} ms)`);
      assert.match(err.message, /sent nothing for 1\.5 s/);
    }
    // Ten at once: three requests reach the endpoint, the others wait their turn (and time out in turn, in four waves).
    r.state.mostBusy = 0;
    const many = Array.from({ length: 10 }, (_, i) => store.head(`m${i}`).catch((e: unknown) => e));
    for (let waited = 0; r.busy.size < 3 && waited < 1000; waited += 10) await new Promise((res) => setTimeout(res, 10));
    assert.equal(store.inFlight, 3);
    for (const e of await Promise.all(many)) assert.equal((e as { code?: string }).code, 'LFB_ERR_STORE_TIMEOUT');
    assert.equal(r.state.mostBusy, 3, 'at most (and here exactly) maxInFlight requests were on the wire at once');
  } finally {
    await store.close();
    await r.close();
  }
});

test('radosgw stopped (SIGSTOP): a get fails with LFB_ERR_STORE_TIMEOUT within the deadline; after SIGCONT the same store works', async () => {
  const store = await open(ceph().bucket('sigstop'), { timeoutMs: 2000 });
  const rgw = ceph().pid('rgw');
  try {
    await store.put('o', Buffer.from('bytes'));
    process.kill(rgw, 'SIGSTOP');
    try {
      const started = Date.now();
      await rejectsWith(store.get('o'), 'LFB_ERR_STORE_TIMEOUT');
      assert.ok(Date.now() - started < 3500, `took ${Date.now() - started} ms`);
    } finally {
      process.kill(rgw, 'SIGCONT');
    }
    assert.equal((await store.get('o')).toString(), 'bytes');
  } finally {
    await store.close();
  }
});

test('radosgw errors: wrong keys → LFB_ERR_STORE_DENIED; nothing listening → LFB_ERR_STORE_UNAVAILABLE; a bucket quota reached → LFB_ERR_NO_SPACE; a missing bucket not to be created → LFB_ERR_OBJECT_NOT_FOUND', async () => {
  const { connection } = ceph();
  await rejectsWith(
    S3ObjectStore.open(`s3://${ceph().bucket('denied')}`, {
      connection: { ...connection, credentials: { accessKeyId: connection.credentials!.accessKeyId, secretAccessKey: 'wrong' } },
    }),
    'LFB_ERR_STORE_DENIED',
  );
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise((r) => closed.close(r));
  await rejectsWith(
    S3ObjectStore.open(`s3://${ceph().bucket('refused')}`, { connection: { ...connection, endpoint: `http://127.0.0.1:${port}` } }),
    'LFB_ERR_STORE_UNAVAILABLE',
  );
  await rejectsWith(open(ceph().bucket('missing'), { createBucket: false }), 'LFB_ERR_OBJECT_NOT_FOUND');
  const bucket = ceph().bucket('quota');
  const store = await open(bucket);
  try {
    ceph().admin(['quota', 'set', '--quota-scope=bucket', `--bucket=${bucket}`, '--max-size=1048576']);
    ceph().admin(['quota', 'enable', '--quota-scope=bucket', `--bucket=${bucket}`]);
    await rejectsWith(store.put('big', Buffer.alloc(2 << 20)), 'LFB_ERR_NO_SPACE');
    assert.equal(await store.head('big'), undefined);
  } finally {
    await store.close();
  }
});
