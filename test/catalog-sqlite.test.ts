// The catalog on SQLite: the conformance and migration suites, plus what only
// SQLite has (the state folder's file, its modes, WAL). No root, no ports.
import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { parseCatalogSpec, redactUrl } from '../src/catalog/database.js';
import { openCatalog } from '../src/catalog/open.js';
import { at, catalogConformanceSuite, newRun, rejectsWith } from '../src/testing/catalog-conformance.js';
import { catalogMigrationSuite } from '../src/testing/catalog-migration-suite.js';
import { tempDir } from './helpers.js';

catalogConformanceSuite('sqlite', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  return { open: () => openCatalog(join(dir, 'state')), cleanup };
});

catalogMigrationSuite('sqlite', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  return { spec: `sqlite:${join(dir, 'catalog.db')}`, cleanup };
});

test('sqlite: a state folder holds catalog.db, the folder 0700 and the file 0600, in WAL mode', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  try {
    const state = join(dir, 'state');
    const catalog = await openCatalog(state);
    try {
      await catalog.createRun(newRun('web', 0));
      assert.equal((await stat(state)).mode & 0o777, 0o700);
      assert.equal((await stat(join(state, 'catalog.db'))).mode & 0o777, 0o600);
      for (const side of ['catalog.db-wal', 'catalog.db-shm']) assert.equal((await stat(join(state, side))).mode & 0o077, 0, `${side} is the owner's only`);
    } finally {
      await catalog.close();
    }
    const check = new BetterSqlite3(join(state, 'catalog.db'), { readonly: true });
    try {
      assert.equal(check.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      check.close();
    }
  } finally {
    await cleanup();
  }
});

test('sqlite: writers in two threads (two connections, as two processes) keep log seq unique and each append whole', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  try {
    const spec = join(dir, 'state');
    const catalog = await openCatalog(spec);
    try {
      const run = await catalog.createRun(newRun('web', 0));
      const batches = 150;
      const writers = ['a', 'b'].map(
        (tag) =>
          new Promise<void>((resolve, reject) => {
            const worker = new Worker(new URL('./catalog-writer-worker.js', import.meta.url), { workerData: { spec, runId: run.id, batches, tag } });
            worker.once('error', reject);
            worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${tag} exited with ${code}`))));
          }),
      );
      // This thread writes too, through its own connection.
      for (let i = 0; i < batches; i++)
        await catalog.appendLog(
          run.id,
          [0, 1, 2].map((k) => ({ at: at(i), level: 'info' as const, message: `c${i}:${k}` })),
        );
      await Promise.all(writers);
      const log = await catalog.readLog(run.id, 0, 10_000);
      assert.deepEqual(
        log.map((l) => l.seq),
        Array.from({ length: 3 * 3 * batches }, (_, i) => i + 1),
      );
      for (let i = 0; i < log.length; i += 3) {
        const batch = log[i]!.message.split(':')[0];
        assert.deepEqual(
          log.slice(i, i + 3).map((l) => l.message),
          [0, 1, 2].map((k) => `${batch}:${k}`),
        );
      }
      for (const tag of ['a', 'b']) assert.equal(log.filter((l) => l.message.startsWith(tag)).length, 3 * batches);
      const ids = (await catalog.listRuns({ limit: 1000 })).runs.map((r) => r.id);
      assert.equal(new Set(ids).size, 2 * batches + 1);
    } finally {
      await catalog.close();
    }
  } finally {
    await cleanup();
  }
});

test('sqlite: a sqlite:<file> spec opens that file (made 0600) and sqlite::memory: works', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  try {
    const file = join(dir, 'other.db');
    const catalog = await openCatalog(`sqlite:${file}`);
    await catalog.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const memory = await openCatalog('sqlite::memory:');
    try {
      assert.equal((await memory.createRun(newRun('web', 0))).id, 1);
    } finally {
      await memory.close();
    }
  } finally {
    await cleanup();
  }
});

test('sqlite: what the database says goes out as LFB_ERR_CATALOG with its words', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-');
  try {
    const notADatabase = join(dir, 'junk.db');
    await writeFile(notADatabase, Buffer.alloc(8192, 0x41));
    await assert.rejects(openCatalog(`sqlite:${notADatabase}`), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'LFB_ERR_CATALOG');
      assert.match(err.message, /file is not a database/);
      assert.ok(err.message.includes(notADatabase), 'says which file');
      return true;
    });
    await rejectsWith(openCatalog(`sqlite:${join(dir, 'no', 'such', 'folder', 'c.db')}`), 'LFB_ERR_CATALOG');
  } finally {
    await cleanup();
  }
});

test('catalog specs: folder, sqlite:, postgres:// and postgresql://; other schemes are refused', () => {
  assert.deepEqual(parseCatalogSpec('/var/lib/lifeboat'), { kind: 'sqlite', file: '/var/lib/lifeboat/catalog.db', folder: '/var/lib/lifeboat' });
  assert.deepEqual(parseCatalogSpec('sqlite:/tmp/x.db'), { kind: 'sqlite', file: '/tmp/x.db' });
  assert.deepEqual(parseCatalogSpec('sqlite:///tmp/x.db'), { kind: 'sqlite', file: '/tmp/x.db' });
  assert.deepEqual(parseCatalogSpec('postgres:///lifeboat?host=/run/postgresql'), { kind: 'postgres', url: 'postgres:///lifeboat?host=/run/postgresql' });
  assert.equal(parseCatalogSpec('postgresql://u@db.example/lifeboat').kind, 'postgres');
  assert.throws(() => parseCatalogSpec('mysql://u@h/db'), { code: 'LFB_ERR_INVALID_ARGUMENT' });
  assert.throws(() => parseCatalogSpec('sqlite:'), { code: 'LFB_ERR_INVALID_ARGUMENT' });
  assert.throws(() => parseCatalogSpec(''), { code: 'LFB_ERR_INVALID_ARGUMENT' });
});

test('a PostgreSQL URL in a message never shows its password', () => {
  assert.equal(redactUrl('postgres://lifeboat:s3cret@db.example:5433/cat'), 'postgres://lifeboat:***@db.example:5433/cat');
  assert.equal(
    redactUrl('postgresql://lifeboat@db.example/cat?password=s3cret&sslmode=require'),
    'postgresql://lifeboat@db.example/cat?password=***&sslmode=require',
  );
  assert.equal(redactUrl('postgres:///cat?host=/run/postgresql'), 'postgres:///cat?host=/run/postgresql');
  assert.equal(redactUrl('postgres://u:s3cret@/cat?host=/run/postgresql'), 'postgres://u:***@/cat?host=/run/postgresql');
  assert.equal(redactUrl('postgres://u:s3/c@ret@db.example/cat'), 'postgres://u:***@db.example/cat');
  assert.equal(redactUrl('postgres://db.example:5432/cat'), 'postgres://db.example:5432/cat');
  assert.ok(!redactUrl('postgres://u:s3cret@[bad').includes('s3cret'));
});
