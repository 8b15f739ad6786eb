import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../src/objects/local-object-store.js';
import { listAll, objectStoreConformance, rejectsWith } from './object-store-conformance.js';

const folders: string[] = [];
test.after(async () => {
  for (const f of folders) await rm(f, { recursive: true, force: true });
});

async function freshFolder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-objects-'));
  folders.push(dir);
  return dir;
}

objectStoreConformance('local folder', async () => LocalObjectStore.open(await freshFolder()));

test('local folder: objects are files under objects/; a put leaves no temporary file; one a crash left is never listed, and goes at open once a day old', async () => {
  const root = await freshFolder();
  const store = await LocalObjectStore.open(root);
  await store.put('jobs/web/root-1', Buffer.from('r'));
  await store.put('jobs/web/root-2', Buffer.from('r2'), { ifNoneMatch: '*' });
  await rejectsWith(store.put('jobs/web/root-2', Buffer.from('x'), { ifNoneMatch: '*' }), 'LFB_ERR_OBJECT_EXISTS');
  assert.equal((await stat(join(root, 'objects', 'jobs', 'web', 'root-1'))).size, 1);
  assert.deepEqual(await readdir(join(root, 'incoming')), [], 'no temporary file left, after a success or a refused create');
  const fresh = join(root, 'incoming', 'fresh.tmp');
  const old = join(root, 'incoming', 'old.tmp');
  await writeFile(fresh, 'half');
  await writeFile(old, 'half');
  const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600_000);
  await utimes(old, twoDaysAgo, twoDaysAgo);
  assert.deepEqual(
    (await listAll(store, '')).map((o) => o.name),
    ['jobs/web/root-1', 'jobs/web/root-2'],
  );
  await LocalObjectStore.open(root);
  assert.deepEqual(await readdir(join(root, 'incoming')), ['fresh.tmp'], 'a writer may still be writing the fresh one');
});

test('local folder: a name that is both an object and a folder (a, a/b) is refused with LFB_ERR_INVALID_ARGUMENT; retention is refused with LFB_ERR_IMMUTABLE_UNSUPPORTED', async () => {
  const root = await freshFolder();
  const store = await LocalObjectStore.open(root);
  assert.equal(store.retention, false);
  await store.put('a', Buffer.from('file'));
  await rejectsWith(store.put('a/b', Buffer.from('x')), 'LFB_ERR_INVALID_ARGUMENT');
  await store.put('c/d', Buffer.from('x'));
  await rejectsWith(store.put('c', Buffer.from('x')), 'LFB_ERR_INVALID_ARGUMENT');
  await rejectsWith(store.put('c', Buffer.from('x'), { ifNoneMatch: '*' }), 'LFB_ERR_INVALID_ARGUMENT');
  await rejectsWith(store.get('c'), 'LFB_ERR_OBJECT_NOT_FOUND');
  await rejectsWith(store.get('a/b'), 'LFB_ERR_OBJECT_NOT_FOUND');
  assert.equal(await store.head('c'), undefined);
  assert.equal(await store.head('a/b'), undefined);
  await store.delete('c');
  assert.equal((await store.get('c/d')).toString(), 'x', 'deleting the folder name removed nothing');
  await rejectsWith(store.put('r', Buffer.from('x'), { retainUntil: new Date(Date.now() + 60_000) }), 'LFB_ERR_IMMUTABLE_UNSUPPORTED');
  assert.equal(await store.head('r'), undefined, 'nothing was written');
});

test('local folder: files a person put there with names no object can have are not listed', async () => {
  const root = await freshFolder();
  const store = await LocalObjectStore.open(root);
  await store.put('ok', Buffer.from('1'));
  await mkdir(join(root, 'objects', 'sub'), { recursive: true });
  await writeFile(join(root, 'objects', 'sub', 'bad\nname'), 'x');
  assert.deepEqual(
    (await listAll(store, '')).map((o) => o.name),
    ['ok'],
  );
});
