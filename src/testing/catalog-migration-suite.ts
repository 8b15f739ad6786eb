/**
 * Migration tests every catalog database passes: an old catalog opens with
 * this code and keeps its data, a newer one is refused, and servers that open
 * an empty database at the same time migrate it once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Generated, Kysely } from 'kysely';
import { openDatabase, parseCatalogSpec } from '../catalog/database.js';
import { migrateCatalog, readSchemaVersion } from '../catalog/migrate.js';
import { LATEST_SCHEMA_VERSION } from '../catalog/migrations/index.js';
import { openCatalog } from '../catalog/open.js';
import { at, rejectsWith } from './catalog-conformance.js';
import { labReport } from './catalog-conformance-lab.js';

export interface EmptyDatabase {
  /** What openCatalog takes to reach it. */
  readonly spec: string;
  cleanup(): Promise<void>;
}

/** The tables of schema version 1 that the test fills: what a Lifeboat of that version wrote. */
interface V1Schema {
  runs: {
    id: Generated<number>;
    repo: string;
    job: string;
    trigger: string;
    attempt: number;
    retry_of: number | null;
    state: string;
    queued_at: string;
    started_at: string | null;
    ended_at: string | null;
    bytes_read: number;
    bytes_stored: number;
    steps: string;
    error_code: string | null;
    error_message: string | null;
    point_id: string | null;
  };
  log_lines: { run_id: number; seq: number; at: string; level: string; message: string };
  points: {
    repo: string;
    job: string;
    point_id: string;
    seq: number;
    created_at: string;
    kind: string;
    file: string;
    chain_id: string;
    disk_bytes: number;
    stored_bytes: number;
    gfs: string;
    health: string;
  };
  users: { name: string; role: string; password_hash: string; created_at: string };
  catalog_schema: { version: number; description: string; applied_at: string };
}

async function withDatabase(makeDatabase: () => Promise<EmptyDatabase>, body: (spec: string) => Promise<void>): Promise<void> {
  const database = await makeDatabase();
  try {
    await body(database.spec);
  } finally {
    await database.cleanup();
  }
}

/** Opens the raw database (no migration to the newest) for `body`. */
async function raw<T>(spec: string, body: (db: Kysely<V1Schema>, migrateTo: (version: number) => Promise<number>) => Promise<T>): Promise<T> {
  const database = await openDatabase(parseCatalogSpec(spec));
  try {
    return await body(database.db as unknown as Kysely<V1Schema>, (version) => migrateCatalog(database, at(0), version));
  } finally {
    await database.close();
  }
}

export function catalogMigrationSuite(name: string, makeDatabase: () => Promise<EmptyDatabase>): void {
  void test(`${name}: a version 1 catalog with data opens with this code, is migrated, and keeps its data`, () =>
    withDatabase(makeDatabase, async (spec) => {
      const runId = await raw(spec, async (db, migrateTo) => {
        assert.equal(await migrateTo(1), 1);
        assert.equal(await readSchemaVersion(db), 1);
        const run = await db
          .insertInto('runs')
          .values({
            repo: '/repos/a',
            job: 'web',
            trigger: 'schedule',
            attempt: 1,
            retry_of: null,
            state: 'succeeded',
            queued_at: at(1),
            started_at: at(2),
            ended_at: at(3),
            bytes_read: 2 ** 40,
            bytes_stored: 2 ** 33,
            steps: '{"data":1200}',
            error_code: null,
            error_message: null,
            point_id: 'p-1',
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        const id = run.id;
        await db
          .insertInto('log_lines')
          .values([
            { run_id: id, seq: 1, at: at(2), level: 'info', message: 'started' },
            { run_id: id, seq: 2, at: at(3), level: 'info', message: 'done' },
          ])
          .execute();
        await db
          .insertInto('points')
          .values({
            repo: '/repos/a',
            job: 'web',
            point_id: 'p-1',
            seq: 1,
            created_at: at(3),
            kind: 'full',
            file: 'web-1.lbk',
            chain_id: 'c-1',
            disk_bytes: 2 ** 34,
            stored_bytes: 2 ** 33,
            gfs: '["weekly"]',
            health: 'ok',
          })
          .execute();
        await db
          .insertInto('users')
          .values({ name: 'amy', role: 'admin', password_hash: 'scrypt$x', created_at: at(0) })
          .execute();
        return id;
      });

      const catalog = await openCatalog(spec);
      try {
        assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
        const run = await catalog.getRun(runId);
        assert.deepEqual(
          { ...run, id: 0 },
          {
            id: 0,
            repo: '/repos/a',
            job: 'web',
            kind: 'backup',
            trigger: 'schedule',
            attempt: 1,
            retryOf: null,
            state: 'succeeded',
            queuedAt: at(1),
            startedAt: at(2),
            endedAt: at(3),
            bytesRead: 2 ** 40,
            bytesStored: 2 ** 33,
            steps: { data: 1200 },
            errorCode: null,
            errorMessage: null,
            pointId: 'p-1',
            changeMethod: null,
            changeReason: null,
            reportId: null,
          },
        );
        assert.deepEqual(
          (await catalog.readLog(runId)).map((l) => [l.seq, l.message]),
          [
            [1, 'started'],
            [2, 'done'],
          ],
        );
        const [p] = await catalog.listPoints('/repos/a', 'web');
        assert.equal(p?.pointId, 'p-1');
        assert.deepEqual(p?.gfs, ['weekly']);
        assert.equal(p?.changeMethod, null, 'version 2 added the column; old points have none');
        assert.equal((await catalog.getUser('amy'))?.role, 'admin');
        // What versions 2 and 3 brought works on the migrated data.
        const changed = await catalog.updateRun(runId, { changeMethod: 'full', changeReason: 'first point of the chain' });
        assert.equal(changed.changeMethod, 'full');
        assert.deepEqual(
          (await catalog.listRuns({ job: 'web', states: ['succeeded'] })).runs.map((r) => r.id),
          [runId],
        );
        await catalog.appendLog(runId, [{ at: at(4), level: 'warn', message: 'after the upgrade' }]);
        assert.equal((await catalog.readLog(runId, 2))[0]?.seq, 3);
        assert.ok((await catalog.createRun({ repo: '/repos/a', job: 'web', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: at(9) })).id > runId);
      } finally {
        await catalog.close();
      }
      const versions = await raw(spec, (db) => db.selectFrom('catalog_schema').select('version').orderBy('version').execute());
      assert.deepEqual(
        versions.map((v) => v.version),
        Array.from({ length: LATEST_SCHEMA_VERSION }, (_, i) => i + 1),
      );
    }));

  void test(`${name}: a version 5 catalog opens, gains the SureBackup report tables, and keeps its runs`, () =>
    withDatabase(makeDatabase, async (spec) => {
      await raw(spec, async (db, migrateTo) => {
        assert.equal(await migrateTo(5), 5);
        const tables = (await db.introspection.getTables()).map((t) => t.name);
        assert.ok(!tables.includes('lab_reports'), 'version 5 has no report table');
      });
      const catalog = await openCatalog(spec);
      try {
        assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
        assert.deepEqual(await catalog.listLabReports({ repo: '/repos/a' }), { reports: [], next: null });
        const report = labReport('c0ffee', 1, [
          {
            job: 'web',
            point: 'p-1',
            name: 'web',
            ip: '10.99.0.10',
            booted: true,
            seconds: 8,
            tests: [{ name: 'heartbeat', ok: true, detail: 'ok', ms: 8000 }],
          },
        ]);
        await catalog.recordLabReport(report);
        assert.deepEqual(await catalog.getLabReport('/repos/a', 'c0ffee'), report);
        assert.deepEqual(await catalog.latestLabResults('/repos/a', 'web'), [{ point: 'p-1', lastTestedAt: at(2), ok: true, reportId: 'c0ffee' }]);
      } finally {
        await catalog.close();
      }
    }));

  void test(`${name}: a version 6 catalog opens, its runs become backups, and SureBackup runs and reports name each other`, () =>
    withDatabase(makeDatabase, async (spec) => {
      const oldRun = await raw(spec, async (db, migrateTo) => {
        assert.equal(await migrateTo(6), 6);
        const columns = (await db.introspection.getTables()).find((t) => t.name === 'runs')!.columns.map((c) => c.name);
        assert.ok(!columns.includes('kind'), 'version 6 has no run kind');
        const made = await db
          .insertInto('runs')
          .values({
            repo: '/repos/a',
            job: 'web',
            trigger: 'schedule',
            attempt: 1,
            retry_of: null,
            state: 'succeeded',
            queued_at: at(1),
            started_at: at(2),
            ended_at: at(3),
            bytes_read: 1,
            bytes_stored: 1,
            steps: '{}',
            error_code: null,
            error_message: null,
            point_id: 'p-1',
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        return made.id;
      });
      const catalog = await openCatalog(spec);
      try {
        assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
        const old = await catalog.getRun(oldRun);
        assert.equal(old.kind, 'backup', 'runs before version 7 are backups');
        assert.equal(old.reportId, null);
        // A SureBackup job named as the backup job: the kind tells their runs apart.
        const sb = await catalog.createRun({ repo: '/repos/a', job: 'web', kind: 'surebackup', trigger: 'after', attempt: 1, retryOf: null, queuedAt: at(4) });
        assert.equal(sb.kind, 'surebackup');
        assert.deepEqual(
          (await catalog.listRuns({ repo: '/repos/a', job: 'web', kind: 'backup' })).runs.map((r) => r.id),
          [oldRun],
        );
        assert.deepEqual(
          (await catalog.listRuns({ repo: '/repos/a', job: 'web', kind: 'surebackup' })).runs.map((r) => r.id),
          [sb.id],
        );
        assert.equal((await catalog.listRuns({ repo: '/repos/a', job: 'web' })).runs.length, 2, 'both kinds without a filter');
        await rejectsWith(
          catalog.createRun({ repo: '/repos/a', job: 'web', kind: 'restore' as 'backup', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: at(5) }),
          'LFB_ERR_INVALID_ARGUMENT',
        );
        const report = { ...labReport('f00d01', 6, []), runId: sb.id };
        await catalog.recordLabReport(report);
        const ended = await catalog.updateRun(sb.id, { state: 'succeeded', endedAt: at(7), reportId: report.id });
        assert.equal(ended.reportId, 'f00d01');
        assert.equal(ended.kind, 'surebackup', 'an update keeps the kind');
        assert.deepEqual(await catalog.getLabReport('/repos/a', ended.reportId!), report);
        const cliReport = labReport('f00d02', 8, []);
        await catalog.recordLabReport(cliReport);
        assert.equal((await catalog.getLabReport('/repos/a', 'f00d02')).runId, undefined, 'a report of the CLI has no run');
      } finally {
        await catalog.close();
      }
    }));

  void test(`${name}: a catalog written by a newer Lifeboat is refused with LFB_ERR_CATALOG_VERSION and left as it is`, () =>
    withDatabase(makeDatabase, async (spec) => {
      await (await openCatalog(spec)).close();
      const newer = LATEST_SCHEMA_VERSION + 1;
      await raw(spec, (db) =>
        db
          .insertInto('catalog_schema')
          .values({ version: newer, description: 'from the future', applied_at: at(0) })
          .execute(),
      );
      for (let i = 0; i < 2; i++) {
        await assert.rejects(openCatalog(spec), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'LFB_ERR_CATALOG_VERSION');
          assert.match(err.message, new RegExp(`version ${newer}\\b.*up to version ${LATEST_SCHEMA_VERSION}`));
          return true;
        });
      }
      assert.equal(await raw(spec, (db) => readSchemaVersion(db)), newer);
      await rejectsWith(
        raw(spec, (_db, migrateTo) => migrateTo(newer)),
        'LFB_ERR_INVALID_ARGUMENT',
      );
    }));

  void test(`${name}: servers opening one empty database at once migrate it once`, () =>
    withDatabase(makeDatabase, async (spec) => {
      const catalogs = await Promise.all([openCatalog(spec), openCatalog(spec), openCatalog(spec)]);
      try {
        for (const c of catalogs) assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
      } finally {
        for (const c of catalogs) await c.close();
      }
      const versions = await raw(spec, (db) => db.selectFrom('catalog_schema').select('version').execute());
      assert.equal(versions.length, LATEST_SCHEMA_VERSION);
    }));
}
