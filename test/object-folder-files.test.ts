// What the service's view of a job folder on object storage stands on: ObjectFileStorage.folderFiles (one listing of
// a folder's roots: each file's latest generation, root size and size; subfolders and folder marks left out; a root
// that does not decode has size -1), and the host folder a command computes from a location's text being the one the
// store's hostPath gives. On a local object store: no root, QEMU or port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../src/objects/local-object-store.js';
import { ObjectFileStorage, objectStoreHostDir } from '../src/objects/object-files.js';
import { rootName } from '../src/objects/file-root.js';
import { formatS3Url, parseS3Url } from '../src/objects/s3-config.js';
import { repositoryHostRoot } from '../src/repository/location.js';

async function withStorage(fn: (s: ObjectFileStorage, store: LocalObjectStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-folder-files-'));
  const store = await LocalObjectStore.open(dir);
  try {
    await fn(new ObjectFileStorage(store, '/repo', { packBytes: 4096 }), store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function write(s: ObjectFileStorage, path: string, bytes: number, mode: 'create' | 'replace' = 'create'): Promise<void> {
  const f = await s.open(path, mode);
  await f.pwrite(Buffer.alloc(bytes, 7), 0);
  await f.close();
}

test('folderFiles: the files of one folder with their latest generation and size; subfolders, marks and unwanted names left out', () =>
  withStorage(async (s, store) => {
    await s.mkdir('/repo/jobs/vm');
    await s.mkdir('/repo/jobs/vm/holds');
    await write(s, '/repo/jobs/vm/job.json', 100);
    await write(s, '/repo/jobs/vm/a.vbk', 10_000);
    await write(s, '/repo/jobs/vm/holds/session-x.json', 50);
    await write(s, '/repo/jobs/vm/.b.vib.tmp', 30);
    const first = await s.folderFiles('/repo/jobs/vm');
    assert.deepEqual(
      first.map((f) => [f.name, f.size]),
      [
        ['.b.vib.tmp', 30],
        ['a.vbk', 10_000],
        ['job.json', 100],
      ],
    );
    assert.ok(first.every((f) => f.rootBytes > 0));
    // A commit makes a new generation: what a signature sees change.
    await write(s, '/repo/jobs/vm/job.json', 120, 'replace');
    const second = await s.folderFiles('/repo/jobs/vm', (name) => !name.startsWith('.'));
    const job = second.find((f) => f.name === 'job.json')!;
    assert.equal(job.size, 120);
    assert.ok(job.generation > first.find((f) => f.name === 'job.json')!.generation);
    assert.deepEqual(
      second.map((f) => f.name),
      ['a.vbk', 'job.json'],
    );
    // A root that does not decode is there with size -1, not a failure of the whole folder.
    await store.put(rootName('jobs/vm/c.vib', 1), Buffer.from('not a root'));
    assert.equal((await s.folderFiles('/repo/jobs/vm')).find((f) => f.name === 'c.vib')?.size, -1);
    assert.deepEqual(await s.folderFiles('/repo/jobs/none'), []);
  }));

test('the host folder a command finds from a location text is the one the store of that location gives', () => {
  process.env['LIFEBOAT_STATE_DIR'] = '/srv/lifeboat-state';
  for (const [text, url] of [
    ['s3://bucket/prefix', 's3://bucket/prefix'],
    ['s3://bucket/prefix/', 's3://bucket/prefix'],
    ['s3:/bucket/prefix', 's3://bucket/prefix'],
    ['s3://bucket', 's3://bucket'],
    ['s3://bucket/a/b', 's3://bucket/a/b'],
  ] as const) {
    // What S3ObjectStore.open gives as its location (and so ObjectFileStorage.hostPath of the root).
    const store = objectStoreHostDir(formatS3Url(parseS3Url(url)));
    assert.equal(repositoryHostRoot(text), store, text);
    assert.match(store, /^\/srv\/lifeboat-state\/object-stores\/[0-9a-f]{16}$/);
  }
  assert.notEqual(repositoryHostRoot('s3://bucket/a'), repositoryHostRoot('s3://bucket/b'));
  // A folder's host side is the folder.
  assert.equal(repositoryHostRoot('/backups/repo'), '/backups/repo');
});
