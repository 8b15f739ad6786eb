// The catalog on PostgreSQL 15: the conformance and migration suites on one
// temporary cluster (Debian's postgresql package; initdb and pg_ctl as the
// postgres user, so this file needs root), reached over a Unix socket in the
// cluster's folder: it listens on no TCP port. The cluster is stopped and
// removed in every outcome.
import assert from 'node:assert/strict';
import { execFile as execFileCb, execFileSync } from 'node:child_process';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspect, promisify } from 'node:util';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { openCatalog } from '../src/catalog/open.js';
import { catalogConformanceSuite, newRun } from '../src/testing/catalog-conformance.js';
import { catalogMigrationSuite } from '../src/testing/catalog-migration-suite.js';

const execFile = promisify(execFileCb);
const PG_BIN = '/usr/lib/postgresql/15/bin';

let clusterDir = '';
let admin: Kysely<unknown> | undefined;
let databases = 0;

function asPostgres(command: string, args: string[]) {
  return execFile('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { timeout: 120_000 });
}

/** The URL of a database in the test cluster, over its socket. */
function urlOf(database: string): string {
  return `postgres:///${database}?host=${encodeURIComponent(clusterDir)}&user=postgres`;
}

before(async () => {
  clusterDir = await mkdtemp(join(tmpdir(), 'lifeboat-pg-'));
  const uid = Number(execFileSync('id', ['-u', 'postgres']));
  const gid = Number(execFileSync('id', ['-g', 'postgres']));
  await chown(clusterDir, uid, gid);
  await asPostgres('initdb', ['-D', clusterDir, '-A', 'trust', '--no-sync']);
  try {
    // fsync off: the cluster dies with the test; durability is not what it tests.
    await asPostgres('pg_ctl', [
      '-D',
      clusterDir,
      '-l',
      join(clusterDir, 'server.log'),
      '-o',
      `-k ${clusterDir} -c listen_addresses='' -c fsync=off`,
      '-w',
      'start',
    ]);
  } catch (err) {
    const log = await readFile(join(clusterDir, 'server.log'), 'utf8').catch(() => '(no server log)');
    throw new Error(`PostgreSQL did not start: ${String(err)}\n${log}`, { cause: err });
  }
  admin = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: urlOf('postgres'), max: 1 }) }) });
});

after(async () => {
  await admin?.destroy().catch(() => undefined);
  if (clusterDir === '') return;
  await asPostgres('pg_ctl', ['-D', clusterDir, '-m', 'immediate', 'stop']).catch(() => undefined);
  await rm(clusterDir, { recursive: true, force: true });
});

/** A new empty database in the cluster; dropped again by its cleanup. */
async function emptyDatabase(): Promise<{ spec: string; cleanup: () => Promise<void> }> {
  const name = `catalog_${++databases}`;
  await sql`create database ${sql.id(name)}`.execute(admin!);
  return {
    spec: urlOf(name),
    cleanup: async () => {
      await sql`drop database ${sql.id(name)} with (force)`.execute(admin!);
    },
  };
}

catalogConformanceSuite('postgres', async () => {
  const { spec, cleanup } = await emptyDatabase();
  return { open: () => openCatalog(spec), cleanup };
});

catalogMigrationSuite('postgres', emptyDatabase);

test('postgres: a postgresql:// URL with the user before the empty host works too', async () => {
  const { cleanup } = await emptyDatabase();
  try {
    const catalog = await openCatalog(`postgresql://postgres@/catalog_${databases}?host=${encodeURIComponent(clusterDir)}`);
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
    { url: `postgres://nobody:${secret}@/postgres?host=${encodeURIComponent(clusterDir)}`, words: /role "nobody" does not exist/ },
    { url: `postgres:///no_such_db?host=${encodeURIComponent(clusterDir)}&user=postgres&password=${secret}`, words: /database "no_such_db" does not exist/ },
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
