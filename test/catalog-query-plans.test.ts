// How SQLite answers the run listings the server asks most often, over a
// catalog with many runs: each must read only the runs it returns (an index
// search on every filter it has), not sort a whole repository's runs on the
// server's event loop. No root, no QEMU, no ports.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { openCatalog } from '../src/catalog/open.js';
import { tempDir } from './helpers.js';

const ENDED = ['succeeded', 'warning', 'failed', 'interrupted', 'stopped'];

/** The statement SqlCatalog.listRuns makes of a filter (kysely's SQL for SQLite), and the index search it must use. */
const LISTINGS: { what: string; sql: string; args: unknown[]; search: RegExp }[] = [
  {
    what: "a repository's queued and running runs (the scheduler, every round)",
    sql: `select * from "runs" where "repo" = ? and "state" in (?, ?) order by "id" desc limit ?`,
    args: ['/srv/a', 'queued', 'running', 1001],
    search: /USING (COVERING )?INDEX \S+ \(repo=\? AND state=\?\)/,
  },
  {
    what: "a repository's failed runs (GET /runs?repo&state=failed)",
    sql: `select * from "runs" where "repo" = ? and "state" in (?) order by "id" desc limit ?`,
    args: ['/srv/a', 'failed', 51],
    search: /USING (COVERING )?INDEX \S+ \(repo=\? AND state=\?\)/,
  },
  {
    what: "a job's latest ended run (the scheduler, per job and round)",
    sql: `select * from "runs" where "repo" = ? and "job" = ? and "state" in (?, ?, ?, ?, ?) order by "id" desc limit ?`,
    args: ['/srv/a', 'vm-1', ...ENDED, 2],
    search: /USING (COVERING )?INDEX \S+ \(repo=\? AND job=\?/,
  },
  {
    what: "each backup job's newest run (GET jobs, one statement for a repository's jobs)",
    sql: `select * from "runs" where "id" in (select "newest"."id" from (select "id" from "runs" where "repo" = ? and "job" = ? and "kind" = ? order by "id" desc limit ?) as "newest" union all select "newest"."id" from (select "id" from "runs" where "repo" = ? and "job" = ? and "kind" = ? order by "id" desc limit ?) as "newest")`,
    args: ['/srv/a', 'vm-1', 'backup', 1, '/srv/a', 'vm-2', 'backup', 1],
    // No temporary B-tree: each job's runs are walked from the newest, never sorted.
    search:
      /^SEARCH runs USING INTEGER PRIMARY KEY \(rowid=\?\)(?:(?!TEMP B-TREE).)*SEARCH runs USING INDEX runs_repo_job_id \(repo=\? AND job=\?\)(?:(?!TEMP B-TREE).)*$/,
  },
];

test('sqlite: the run listings the scheduler and the API ask for search an index on each of their filters', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-catalog-plan-');
  try {
    const state = join(dir, 'state');
    // The catalog as the server makes it (every migration), with runs in it so the planner has something to plan for.
    const catalog = await openCatalog(state);
    try {
      for (let i = 0; i < 200; i++) {
        const run = await catalog.createRun({
          repo: `/srv/${i % 2 ? 'a' : 'b'}`,
          job: `vm-${i % 10}`,
          trigger: 'schedule',
          attempt: 1,
          retryOf: null,
          queuedAt: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(),
        });
        await catalog.updateRun(run.id, { state: i % 50 === 0 ? 'running' : i % 7 === 0 ? 'failed' : 'succeeded' });
      }
    } finally {
      await catalog.close();
    }
    const db = new BetterSqlite3(join(state, 'catalog.db'), { readonly: true });
    try {
      for (const l of LISTINGS) {
        const plan = (db.prepare(`explain query plan ${l.sql}`).all(...l.args) as { detail: string }[]).map((r) => r.detail).join(' | ');
        assert.match(plan, l.search, `${l.what}: ${plan}`);
      }
    } finally {
      db.close();
    }
  } finally {
    await cleanup();
  }
});
