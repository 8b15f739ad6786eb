// The object-store seam's conformance suite: what every ObjectStore promises
// (src/objects/object-store.ts), run on each implementation by its own test
// file (objects-local: a local folder; objects-s3: Ceph's radosgw).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ERROR_CODES, isLifeboatError, type ErrorCode, type LifeboatError } from '../src/core/errors.js';
import { mapLimited } from '../src/core/map-limited.js';
import { compareNames, type ObjectInfo, type ObjectStore } from '../src/objects/object-store.js';

/** Opens an empty store of its own for one test (a new folder, a new bucket). */
export type OpenStore = () => Promise<ObjectStore>;

export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, about?: string): Promise<LifeboatError> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.ok(isLifeboatError(caught), `expected a LifeboatError ${code}${about !== undefined ? ` (${about})` : ''}, got ${String(caught)}`);
  assert.equal(caught.code, code, `${about ?? ''}: ${caught.message}`);
  assert.ok(caught.code in ERROR_CODES);
  assert.ok(caught.message.length > 10, 'the message says something');
  return caught;
}

export async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function withStore(open: OpenStore, fn: (store: ObjectStore) => Promise<void>): Promise<void> {
  const store = await open();
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

export function objectStoreConformance(label: string, open: OpenStore): void {
  const t = (name: string, fn: (store: ObjectStore) => Promise<void>): void => {
    test(`${label}: ${name}`, () => withStore(open, fn));
  };

  t('put, get, head and replace; an absent object is LFB_ERR_OBJECT_NOT_FOUND on get and undefined on head', async (store) => {
    assert.equal(await store.head('a/one'), undefined);
    const err = await rejectsWith(store.get('a/one'), 'LFB_ERR_OBJECT_NOT_FOUND');
    assert.match(err.message, /a\/one/, 'the message names the object');
    await store.put('a/one', Buffer.from('first'));
    assert.equal((await store.get('a/one')).toString(), 'first');
    assert.equal((await store.head('a/one'))?.size, 5);
    await store.put('a/one', Buffer.from('second, longer'));
    assert.equal((await store.get('a/one')).toString(), 'second, longer');
    assert.equal((await store.head('a/one'))?.size, 14);
    await store.put('empty', new Uint8Array(0));
    assert.equal((await store.get('empty')).length, 0);
    assert.equal((await store.get('empty', { offset: 0, length: 10 })).length, 0);
    assert.equal((await store.head('empty'))?.size, 0);
  });

  t('a create-only put (ifNoneMatch *) creates, and on an existing name fails with LFB_ERR_OBJECT_EXISTS leaving it as it was', async (store) => {
    await store.put('roots/0001', Buffer.from('root one'), { ifNoneMatch: '*' });
    const err = await rejectsWith(store.put('roots/0001', Buffer.from('root two'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
    assert.match(err.message, /roots\/0001/);
    assert.equal((await store.get('roots/0001')).toString(), 'root one');
  });

  t('create-only races: of concurrent creates of one name exactly one wins, and the object holds its bytes', async (store) => {
    const rounds = 24;
    const racers = 3;
    await Promise.all(
      Array.from({ length: rounds }, async (_, r) => {
        const name = `race/${String(r).padStart(3, '0')}`;
        const bodies = Array.from({ length: racers }, (_, i) => Buffer.from(`round ${r} writer ${i} ${randomBytes(8).toString('hex')}`));
        const results = await Promise.allSettled(bodies.map((b) => store.put(name, b, { ifNoneMatch: '*' })));
        const won = results.flatMap((res, i) => (res.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1, `round ${r}: exactly one create wins (${results.map((x) => x.status).join(', ')})`);
        for (const res of results)
          if (res.status === 'rejected')
            assert.ok(isLifeboatError(res.reason, 'LFB_ERR_OBJECT_EXISTS'), `round ${r}: the losers get LFB_ERR_OBJECT_EXISTS: ${String(res.reason)}`);
        assert.deepEqual(await store.get(name), bodies[won[0]!]);
      }),
    );
  });

  t('ranged reads: exact bytes inside; a range past the end answers short; one starting at or after the end answers nothing', async (store) => {
    const data = randomBytes(1 << 20);
    await store.put('ranged', data);
    for (const [offset, length] of [
      [0, 1],
      [0, 4096],
      [1, 1],
      [123_457, 65_536],
      [(1 << 20) - 1, 1],
      [0, 1 << 20],
    ] as const)
      assert.deepEqual(await store.get('ranged', { offset, length }), data.subarray(offset, offset + length), `range ${offset}+${length}`);
    assert.deepEqual(await store.get('ranged', { offset: (1 << 20) - 10, length: 100 }), data.subarray((1 << 20) - 10), 'past the end: the bytes up to it');
    assert.equal((await store.get('ranged', { offset: 1 << 20, length: 1 })).length, 0, 'at the end: nothing');
    assert.equal((await store.get('ranged', { offset: (1 << 20) + 5000, length: 10 })).length, 0, 'after the end: nothing');
    await rejectsWith(store.get('absent', { offset: 0, length: 10 }), 'LFB_ERR_OBJECT_NOT_FOUND');
    for (const range of [
      { offset: -1, length: 1 },
      { offset: 0, length: 0 },
      { offset: 0.5, length: 1 },
      { offset: 0, length: Number.NaN },
    ])
      await rejectsWith(store.get('ranged', range), 'LFB_ERR_INVALID_ARGUMENT', JSON.stringify(range));
  });

  t('a 32 MiB object comes back bytes-exact, whole and ranged', async (store) => {
    const data = randomBytes(32 << 20);
    await store.put('packs/large', data);
    assert.equal((await store.head('packs/large'))?.size, data.length);
    assert.equal(sha(await store.get('packs/large')), sha(data));
    const mid = (16 << 20) - 3;
    assert.deepEqual(await store.get('packs/large', { offset: mid, length: 8 << 20 }), data.subarray(mid, mid + (8 << 20)));
  });

  t('list: by prefix, in the byte order of the names, with sizes; a prefix may be a folder or any beginning of a name', async (store) => {
    // Byte order: '-' (2d) < '/' (2f) < '0' (30), and U+FFFF (ef bf bf) < '𝄞' (f0 9d 84 9e), which UTF-16 order puts the other way round.
    const names = ['l/a-b', 'l/a/b', 'l/a/c/d', 'l/a0', 'l/b', 'l/é', 'l/\uffff', 'l/𝄞', 'l/B', 'l/a b', 'other/x', 'l2'];
    await mapLimited(names, 4, (n) => store.put(n, Buffer.from(n)));
    const expected = names.filter((n) => n.startsWith('l/')).sort(compareNames);
    assert.deepEqual(expected.slice(0, 4), ['l/B', 'l/a b', 'l/a-b', 'l/a/b'], 'the expected order is byte order');
    const listed = await listAll(store, 'l/');
    assert.deepEqual(
      listed.map((o) => o.name),
      expected,
    );
    for (const o of listed) assert.equal(o.size, Buffer.byteLength(o.name), o.name);
    assert.deepEqual(
      (await listAll(store, 'l/a')).map((o) => o.name),
      ['l/a b', 'l/a-b', 'l/a/b', 'l/a/c/d', 'l/a0'],
    );
    assert.deepEqual(
      (await listAll(store, 'l/a/')).map((o) => o.name),
      ['l/a/b', 'l/a/c/d'],
    );
    assert.deepEqual(
      (await listAll(store, 'l')).map((o) => o.name),
      [...expected, 'l2'],
    );
    assert.equal((await listAll(store, '')).length, names.length);
    assert.deepEqual(await listAll(store, 'nothing/'), []);
    assert.deepEqual(await listAll(store, 'l/zz'), []);
  });

  t('list over 1100 keys (S3 pages at 1000): every key once, in order, read lazily', async (store) => {
    const names = Array.from({ length: 1100 }, (_, i) => `many/${(i * 7919) % 1100}`.padEnd(12, 'x'));
    await mapLimited(names, 16, (n) => store.put(n, Buffer.from('.')));
    await store.put('manz', Buffer.from('not under many/'));
    const listed = await listAll(store, 'many/');
    assert.equal(listed.length, 1100);
    assert.deepEqual(
      listed.map((o) => o.name),
      [...names].sort(compareNames),
    );
    // Breaking out early is fine: an iterator, not a listing held whole.
    let seen = 0;
    for await (const o of store.list('many/')) {
      assert.equal(o.size, 1);
      if (++seen === 3) break;
    }
    assert.equal(seen, 3);
  });

  t('delete: the object is gone from get, head and list; deleting an absent object (twice) is not an error', async (store) => {
    await store.put('d/keep', Buffer.from('k'));
    await store.put('d/gone', Buffer.from('g'));
    await store.delete('d/gone');
    assert.equal(await store.head('d/gone'), undefined);
    await rejectsWith(store.get('d/gone'), 'LFB_ERR_OBJECT_NOT_FOUND');
    assert.deepEqual(
      (await listAll(store, 'd/')).map((o) => o.name),
      ['d/keep'],
    );
    await store.delete('d/gone');
    await store.delete('d/never');
    await store.delete('d/never/deeper');
    // And the name can be created again, create-only.
    await store.put('d/gone', Buffer.from('again'), { ifNoneMatch: '*' });
    assert.equal((await store.get('d/gone')).toString(), 'again');
  });

  t('hostile names are refused with LFB_ERR_INVALID_ARGUMENT by every call; unusual but valid names round-trip', async (store) => {
    const hostile = [
      '',
      '.',
      '..',
      '../x',
      'a/../b',
      'a/./b',
      '/a',
      'a/',
      'a//b',
      'a\u0000b',
      'a\nb',
      'tab\there',
      '\u007f',
      'c1\u0085',
      'lone\ud800',
      'x'.repeat(256),
      `${'abcd/'.repeat(204)}abcde`,
    ];
    for (const name of hostile) {
      const about = JSON.stringify(name.slice(0, 20));
      await rejectsWith(store.put(name, Buffer.from('x')), 'LFB_ERR_INVALID_ARGUMENT', `put ${about}`);
      await rejectsWith(store.put(name, Buffer.from('x'), { ifNoneMatch: '*' }), 'LFB_ERR_INVALID_ARGUMENT', `create ${about}`);
      await rejectsWith(store.get(name), 'LFB_ERR_INVALID_ARGUMENT', `get ${about}`);
      await rejectsWith(store.head(name), 'LFB_ERR_INVALID_ARGUMENT', `head ${about}`);
      await rejectsWith(store.delete(name), 'LFB_ERR_INVALID_ARGUMENT', `delete ${about}`);
    }
    for (const prefix of ['../', 'a/../', '/x', 'a//', 'a\u0001'])
      await rejectsWith(listAll(store, prefix), 'LFB_ERR_INVALID_ARGUMENT', `list ${JSON.stringify(prefix)}`);
    assert.deepEqual(await listAll(store, ''), [], 'nothing was written');
    const odd = [
      'sp ace',
      'ü/ñ/日本',
      '%41%2F',
      'a+b=c&d?e#f',
      '.hidden',
      '..x',
      'x..',
      `${'x'.repeat(255)}/${'y'.repeat(255)}/${'z'.repeat(255)}`,
      'q\'uote"s',
      'back\\slash',
    ];
    for (const name of odd) {
      await store.put(name, Buffer.from(name));
      assert.equal((await store.get(name)).toString(), name, JSON.stringify(name));
    }
    assert.deepEqual(
      (await listAll(store, '')).map((o) => o.name),
      [...odd].sort(compareNames),
    );
  });

  t('many calls at once (far more than the requests in flight) all complete', async (store) => {
    const names = Array.from({ length: 64 }, (_, i) => `burst/${i}`);
    await Promise.all(names.map((n) => store.put(n, Buffer.from(n))));
    const got = await Promise.all(names.map((n) => store.get(n)));
    assert.deepEqual(
      got.map((b) => b.toString()),
      names,
    );
    await Promise.all(names.map((n) => store.delete(n)));
    assert.deepEqual(await listAll(store, 'burst/'), []);
  });
}
