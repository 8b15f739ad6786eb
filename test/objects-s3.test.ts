// The S3 object store on a real Ceph RADOS Gateway (one cluster for this file, a bucket per test):
// the conformance suites (object store, and storage seam on objects), object lock, stalled endpoints, the bound on requests in flight, error codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CreateBucketCommand, ListObjectVersionsCommand, PutBucketVersioningCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3ObjectStore, type S3StoreOptions } from '../src/objects/s3-object-store.js';
import { useCephS3 } from './ceph-fixture.js';
import { listAll, objectStoreConformance, rejectsWith } from './object-store-conformance.js';
import { ObjectFileStorage } from '../src/objects/object-files.js';
import { storageConformance } from './storage-conformance.js';

const ceph = useCephS3();

const open = (bucket: string, options: S3StoreOptions = {}, prefix = 'repo'): Promise<S3ObjectStore> =>
  S3ObjectStore.open(`s3://${bucket}/${prefix}`, { connection: ceph().connection, ...options });

objectStoreConformance('ceph radosgw', () => open(ceph().bucket('conformance')));
// Object lock makes a bucket versioned, where radosgw ignores If-None-Match: create-only works otherwise there (s3-versions.ts).
objectStoreConformance('ceph radosgw, object-lock bucket', () => open(ceph().bucket('conformance-lock'), { objectLock: true }));

// The storage seam on radosgw: files as packs and roots (packs of 64 KiB, so that the suite's writes flush many).
for (const [label, objectLock] of [
  ['object files on radosgw', false],
  ['object files on radosgw, object-lock bucket', true],
] as const)
  storageConformance(label, async () => {
    const store = await open(ceph().bucket(objectLock ? 'files-lock' : 'files'), { objectLock });
    return { storage: new ObjectFileStorage(store, '/repo', { packBytes: 64 * 1024 }), root: '/repo/t', close: () => store.close() };
  });

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

/** Versions and delete markers of `key`, or (ending in '/') of every key under it. */
function versionsOf(bucket: string, key: string): Promise<number> {
  const client = new S3Client({ ...ceph().connection, forcePathStyle: true });
  return client
    .send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }))
    .then((r) => [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])].filter((v) => v.Key === key || (key.endsWith('/') && v.Key !== undefined)).length)
    .finally(() => client.destroy());
}

/** A PutObject of our own on `key`, past the store (a version it did not write). */
function rawPut(bucket: string, key: string, body: string): Promise<unknown> {
  const client = new S3Client({ ...ceph().connection, forcePathStyle: true });
  return client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(body) })).finally(() => client.destroy());
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
    // A plain put does not replace a locked object either: its own version is removed again.
    const locked = await rejectsWith(store.put('roots/1', Buffer.from('replacement')), 'LFB_ERR_IMMUTABLE');
    assert.match(locked.message, /not replaced/);
    assert.equal((await store.get('roots/1')).toString(), 'commit root');
    assert.equal(await versionsOf(bucket, 'repo/roots/1'), 1);
    // radosgw 16 ignores If-None-Match here: the store found so at open (a probe that leaves nothing behind) and emulates.
    assert.equal(store.versioning, 'emulated');
    assert.equal(await versionsOf(bucket, 'repo/'), 1, 'only roots/1: the probe key is gone');
    // A plain put on this (versioned) bucket replaces: the older version is removed after the new one landed.
    await store.put('free', Buffer.from('v1'));
    await store.put('free', Buffer.from('v2'));
    assert.equal(await versionsOf(bucket, 'repo/free'), 1);
    assert.equal((await store.get('free')).toString(), 'v2');
    // Without retention, a delete on this bucket removes every version and delete marker, not only the current one.
    await rawPut(bucket, 'repo/free', 'younger');
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
    assert.equal(store.versioning, 'plain');
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

// ---- Versioned buckets: what readers see after create-only races, retried puts and failed retention (s3-versions.ts).

/** The store's own S3 client, to inject faults with the SDK's middleware (tests only). */
function clientOf(store: S3ObjectStore): S3Client {
  return (store as unknown as { client: S3Client }).client;
}

function rawClient(): S3Client {
  return new S3Client({ ...ceph().connection, forcePathStyle: true });
}

test('versioned bucket: a younger version left behind on a name (a loser that never removed its own) does not change what get, head and list return: the first writer', async () => {
  const bucket = ceph().bucket('younger');
  const store = await open(bucket, { objectLock: true });
  try {
    await store.put('roots/1', Buffer.from('first writer'), { ifNoneMatch: '*' });
    // A loser's PUT that was never removed (it crashed, its delete timed out, or a default retention locked it).
    await rawPut(bucket, 'repo/roots/1', 'the loser, longer');
    assert.equal(await versionsOf(bucket, 'repo/roots/1'), 2);
    assert.equal((await store.get('roots/1')).toString(), 'first writer');
    assert.equal((await store.get('roots/1', { offset: 6, length: 100 })).toString(), 'writer');
    assert.equal((await store.head('roots/1'))?.size, 'first writer'.length);
    assert.deepEqual(await listAll(store, 'roots/'), [{ name: 'roots/1', size: 'first writer'.length }]);
    await rejectsWith(store.put('roots/1', Buffer.from('third'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
    assert.equal((await store.get('roots/1')).toString(), 'first writer');
  } finally {
    await store.close();
  }
});

test('versioned bucket: list pages of 2 versions, where the versions of one key span pages, give each key once with the size of its winner', async () => {
  const bucket = ceph().bucket('vpages');
  const store = await open(bucket, { objectLock: true, listPageSize: 2 });
  try {
    const names = ['k/a', 'k/b', 'k/c', 'k/d'];
    for (const n of names) await store.put(n, Buffer.from(`winner ${n}`), { ifNoneMatch: '*' });
    // Younger versions left behind: 3 on k/b, 1 on k/c.
    for (const [n, extra] of [
      ['k/b', 3],
      ['k/c', 1],
    ] as const)
      for (let i = 0; i < extra; i++) await rawPut(bucket, `repo/${n}`, `a much longer loser ${i}`);
    assert.deepEqual(
      await listAll(store, 'k/'),
      names.map((name) => ({ name, size: `winner ${name}`.length })),
    );
  } finally {
    await store.close();
  }
});

let faults = 0;

/** Makes the store's next `count` PutObject answers get lost after the object landed (a reset on the way back). */
function loseAnswers(store: S3ObjectStore, count: number): { landed: number } {
  const state = { landed: 0 };
  clientOf(store).middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      if (context.commandName === 'PutObjectCommand' && state.landed < count) {
        state.landed += 1;
        throw Object.assign(new Error('socket hang up (test: the answer was lost)'), { code: 'ECONNRESET' });
      }
      return out;
    },
    { step: 'initialize', name: `loseAnswers${++faults}` },
  );
  return state;
}

test('versioned bucket: a create-only put retried after lost answers leaves none of its attempts behind, whether it lost or won', async () => {
  const bucket = ceph().bucket('retried');
  const other = await open(bucket, { objectLock: true });
  const store = await open(bucket, { objectLock: true });
  try {
    await other.put('roots/1', Buffer.from('other writer'), { ifNoneMatch: '*' });
    const lost = loseAnswers(store, 2);
    await rejectsWith(store.put('roots/1', Buffer.from('mine'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
    assert.equal(lost.landed, 2, 'two attempts landed without an answer, the third was answered');
    assert.equal(await versionsOf(bucket, 'repo/roots/1'), 1, "only the other writer's version is left");
    assert.equal((await store.get('roots/1')).toString(), 'other writer');
    // Won: the first attempt is the winner, the later two are removed.
    loseAnswers(store, 2);
    await store.put('roots/2', Buffer.from('mine'), { ifNoneMatch: '*' });
    assert.equal(await versionsOf(bucket, 'repo/roots/2'), 1, 'one version: the first attempt');
    assert.equal((await store.get('roots/2')).toString(), 'mine');
  } finally {
    await other.close();
    await store.close();
  }
});

test('versioned bucket: a create-only put whose retention call failed is taken by its retry as its own (success, with the retention date), not as a loser', async () => {
  const bucket = ceph().bucket('retain');
  const store = await open(bucket, { objectLock: true });
  try {
    let refused = 0;
    clientOf(store).middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutObjectRetentionCommand' && refused === 0) {
          refused += 1;
          throw Object.assign(new Error('Access Denied (test)'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
        }
        return next(args);
      },
      { step: 'initialize', name: 'refuseRetention' },
    );
    const until = new Date(Date.now() + 5_000);
    await rejectsWith(store.put('roots/1', Buffer.from('root'), { ifNoneMatch: '*', retainUntil: until }), 'LFB_ERR_STORE_DENIED');
    assert.equal((await store.head('roots/1'))?.retainUntil, undefined, 'the root landed without its lock');
    await store.put('roots/1', Buffer.from('root'), { ifNoneMatch: '*', retainUntil: until });
    const head = await store.head('roots/1');
    assert.ok(Math.abs((head?.retainUntil?.getTime() ?? 0) - until.getTime()) < 1000, `the retry set the lock: ${head?.retainUntil?.toISOString()}`);
    assert.equal(await versionsOf(bucket, 'repo/roots/1'), 1);
    await rejectsWith(store.put('roots/1', Buffer.from('other bytes'), { ifNoneMatch: '*', retainUntil: until }), 'LFB_ERR_OBJECT_EXISTS');
    await new Promise((r) => setTimeout(r, until.getTime() - Date.now() + 1500));
    await store.delete('roots/1');
  } finally {
    await store.close();
  }
});

test('versioning suspended: create-only puts are refused with LFB_ERR_STORE_UNSUPPORTED (every PUT there overwrites the null version); other calls work', async () => {
  const bucket = ceph().bucket('suspended');
  const raw = rawClient();
  try {
    await raw.send(new CreateBucketCommand({ Bucket: bucket }));
    await raw.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    await raw.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Suspended' } }));
    const store = await open(bucket);
    try {
      await store.put('roots/1', Buffer.from('plain'));
      const err = await rejectsWith(store.put('roots/2', Buffer.from('x'), { ifNoneMatch: '*' }), 'LFB_ERR_STORE_UNSUPPORTED');
      assert.match(err.message, /versioning is Suspended/);
      assert.equal(await store.head('roots/2'), undefined, 'nothing was written');
      assert.equal((await store.get('roots/1')).toString(), 'plain');
      await store.delete('roots/1');
      assert.equal(await store.head('roots/1'), undefined);
    } finally {
      await store.close();
    }
  } finally {
    raw.destroy();
  }
});

test('a create-only put whose lost answer is retried finds its own object by its ETag; if the object is gone before that check, the put fails with LFB_ERR_OBJECT_EXISTS (the refusal), not OBJECT_NOT_FOUND', async () => {
  const bucket = ceph().bucket('headgone');
  const store = await open(bucket);
  try {
    loseAnswers(store, 1);
    await store.put('roots/1', Buffer.from('mine'), { ifNoneMatch: '*' });
    assert.equal((await store.get('roots/1')).toString(), 'mine');
    loseAnswers(store, 1);
    // Between the refused retry and its check, somebody deletes the object.
    clientOf(store).middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'HeadObjectCommand') await store.delete('roots/2');
        return next(args);
      },
      { step: 'initialize', name: `deleteBeforeHead${++faults}` },
    );
    await rejectsWith(store.put('roots/2', Buffer.from('mine'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
  } finally {
    await store.close();
  }
});

test('a call waiting out the back-off before its retry gives its place among the requests in flight back meanwhile', async () => {
  const store = await open(ceph().bucket('backoff'), { maxInFlight: 1 });
  try {
    await store.put('o', Buffer.from('bytes'));
    let failed = false;
    clientOf(store).middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetObjectCommand' && !failed) {
          failed = true;
          throw Object.assign(new Error('Service Unavailable (test)'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } });
        }
        return next(args);
      },
      { step: 'initialize', name: `failOnce${++faults}` },
    );
    let done = false;
    let sawFree = false;
    const got = store.get('o').finally(() => {
      done = true;
    });
    while (!done) {
      if (failed && !done && store.inFlight === 0) sawFree = true;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal((await got).toString(), 'bytes');
    assert.ok(sawFree, 'the place was free during the back-off (50 to 150 ms)');
  } finally {
    await store.close();
  }
});
