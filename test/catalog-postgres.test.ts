// The catalog on PostgreSQL 15: the conformance and migration suites on one
// temporary cluster (src/testing/postgres-cluster.ts: Debian's postgresql
// package, initdb and pg_ctl as the postgres user, so this file needs root),
// reached over a Unix socket in the cluster's folder: it listens on no TCP
// port. The cluster is stopped and removed in every outcome.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';
import { openCatalog } from '../src/catalog/open.js';
import { catalogConformanceSuite, newRun } from '../src/testing/catalog-conformance.js';
import { catalogMigrationSuite } from '../src/testing/catalog-migration-suite.js';
import { startPostgresCluster, type PostgresCluster } from '../src/testing/postgres-cluster.js';

let cluster: PostgresCluster | undefined;
let databases = 0;

before(async () => {
  cluster = await startPostgresCluster();
});

after(async () => {
  await cluster?.stop();
});

/** A new empty database in the cluster; dropped again by its cleanup. */
async function emptyDatabase(): Promise<{ spec: string; cleanup: () => Promise<void> }> {
  const name = `catalog_${++databases}`;
  const spec = await cluster!.createDatabase(name);
  return { spec, cleanup: () => cluster!.dropDatabase(name) };
}

catalogConformanceSuite('postgres', async () => {
  const { spec, cleanup } = await emptyDatabase();
  return { open: () => openCatalog(spec), cleanup };
});

catalogMigrationSuite('postgres', emptyDatabase);

test('postgres: a postgresql:// URL with the user before the empty host works too', async () => {
  const { cleanup } = await emptyDatabase();
  try {
    const catalog = await openCatalog(`postgresql://postgres@/catalog_${databases}?host=${encodeURIComponent(cluster!.dir)}`);
    try {
      assert.equal((await catalog.createRun(newRun('web', 0))).id, 1);
    } finally {
      await catalog.close();
    }
  } finally {
    await cleanup();
  }
});

test('postgres: the server’s refusal reaches the user as LFB_ERR_CATALOG in its words, and never the password', async () => {
  const secret = 's3cr3t-pw';
  const cases = [
    { url: `postgres://nobody:${secret}@/postgres?host=${encodeURIComponent(cluster!.dir)}`, words: /role "nobody" does not exist/ },
    { url: `postgres:///no_such_db?host=${encodeURIComponent(cluster!.dir)}&user=postgres&password=${secret}`, words: /database "no_such_db" does not exist/ },
    { url: `postgres://u:${secret}@/db?host=/nonexistent-socket-dir`, words: /ENOENT|no such file/i },
  ];
  for (const { url, words } of cases) {
    await assert.rejects(openCatalog(url), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'LFB_ERR_CATALOG', String(err));
      assert.match(err.message, words);
      assert.match(err.message, /\*\*\*/, 'says which URL, password hidden');
      assert.ok(!inspect(err, { depth: 10 }).includes(secret), `no password in ${inspect(err)}`);
      return true;
    });
  }
});
