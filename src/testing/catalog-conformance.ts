/**
 * What every Catalog implementation must do, as node:test tests: run from
 * test/catalog-sqlite.test.ts and test/catalog-postgres.test.ts with a
 * factory for each database. A new implementation passes this suite or is
 * not a catalog. Runs, tasks and logs are here; the other records in
 * catalog-conformance-records.ts, -reads, -lab and -leases.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Catalog, RunRecord } from '../catalog/catalog.js';
import { LATEST_SCHEMA_VERSION } from '../catalog/migrations/index.js';
import { labConformanceTests } from './catalog-conformance-lab.js';
import { leaseConformanceTests } from './catalog-conformance-leases.js';
import { readConformanceTests } from './catalog-conformance-reads.js';
import { recordConformanceTests } from './catalog-conformance-records.js';
import { at, newRun, rejectsWith, type CatalogFactory, type ConformanceTest } from './catalog-fixtures.js';

export { at, newRun, rejectsWith, type CatalogFactory, type CatalogFixture } from './catalog-fixtures.js';

/** Runs `body` on a fresh empty catalog (and the fixture, for more connections); closes everything after. */
function withCatalog(factory: CatalogFactory, body: (catalog: Catalog, openAnother: () => Promise<Catalog>) => Promise<void>): () => Promise<void> {
  return async () => {
    const fixture = await factory();
    const opened: Catalog[] = [];
    const open = async () => {
      const c = await fixture.open();
      opened.push(c);
      return c;
    };
    try {
      await body(await open(), open);
    } finally {
      for (const c of opened) await c.close();
      await fixture.cleanup();
    }
  };
}

/** Registers the conformance tests for one implementation, named `<name>: …`. */
export function catalogConformanceSuite(name: string, factory: CatalogFactory): void {
  // node:test tracks the test's promise itself.
  const t: ConformanceTest = (title, body) => {
    void test(`${name}: ${title}`, withCatalog(factory, body));
  };

  t('a new catalog is at the newest schema version and empty', async (c) => {
    assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.deepEqual(await c.listRuns(), { runs: [], next: null });
    assert.deepEqual(await c.listJobs(), []);
    assert.deepEqual(await c.listUsers(), []);
    assert.deepEqual(await c.listTokens(), []);
  });

  t('run ids increase and a created run reads back as it was made', async (c) => {
    const made: RunRecord[] = [];
    for (let i = 0; i < 5; i++)
      made.push(await c.createRun({ ...newRun('web', i), trigger: i === 4 ? 'retry' : 'manual', attempt: i === 4 ? 2 : 1, retryOf: i === 4 ? 1 : null }));
    for (let i = 1; i < made.length; i++) assert.ok(made[i]!.id > made[i - 1]!.id, 'ids increase');
    const last = made[4]!;
    assert.deepEqual(
      { ...last, id: 0 },
      {
        id: 0,
        repo: '/repos/a',
        job: 'web',
        kind: 'backup',
        trigger: 'retry',
        attempt: 2,
        retryOf: 1,
        state: 'queued',
        queuedAt: at(4),
        startedAt: null,
        endedAt: null,
        bytesRead: 0,
        bytesStored: 0,
        steps: {},
        errorCode: null,
        errorMessage: null,
        pointId: null,
        changeMethod: null,
        changeReason: null,
        reportId: null,
      },
    );
    assert.deepEqual(await c.getRun(last.id), last);
  });

  t('getRun and updateRun of a missing id fail with LFB_ERR_RUN_NOT_FOUND', async (c) => {
    await rejectsWith(c.getRun(12345), 'LFB_ERR_RUN_NOT_FOUND');
    await rejectsWith(c.updateRun(12345, { state: 'running' }), 'LFB_ERR_RUN_NOT_FOUND');
    const run = await c.createRun(newRun('web', 0));
    await rejectsWith(c.getRun(run.id + 1), 'LFB_ERR_RUN_NOT_FOUND');
  });

  t('updateRun changes what it is given and nothing else', async (c) => {
    const run = await c.createRun(newRun('web', 0));
    const other = await c.createRun(newRun('db', 0));
    const started = await c.updateRun(run.id, { state: 'running', startedAt: at(1) });
    assert.deepEqual(started, { ...run, state: 'running', startedAt: at(1) });
    const ended = await c.updateRun(run.id, {
      state: 'warning',
      endedAt: at(9),
      bytesRead: 5 * 2 ** 40,
      bytesStored: 2 ** 52 + 1,
      steps: { scan: 120, data: 5400, commit: 30 },
      errorCode: 'LFB_ERR_CBT',
      errorMessage: 'bitmap lost',
      pointId: 'p-7',
      changeMethod: 'hash',
      changeReason: 'the dirty bitmap was missing after a restart',
      reportId: 'lab-3',
    });
    assert.deepEqual(await c.getRun(run.id), ended);
    // A listing reads its rows another way (as arrays): every field must come out the same.
    assert.deepEqual((await c.listRuns({ job: 'web' })).runs, [ended]);
    assert.equal(ended.bytesStored, 2 ** 52 + 1);
    assert.deepEqual(ended.steps, { scan: 120, data: 5400, commit: 30 });
    assert.equal(ended.startedAt, at(1));
    assert.equal(ended.changeMethod, 'hash');
    const cleared = await c.updateRun(run.id, { errorCode: null, errorMessage: null });
    assert.equal(cleared.errorCode, null);
    assert.equal(cleared.pointId, 'p-7');
    assert.deepEqual(await c.getRun(other.id), other);
    assert.deepEqual(await c.updateRun(run.id, {}), cleared);
  });

  t('listRuns pages newest first with before/next over many runs', async (c) => {
    const ids: number[] = [];
    for (let i = 0; i < 1005; i++) ids.push((await c.createRun(newRun(`job${i % 3}`, i))).id);
    const newestFirst = [...ids].reverse();
    const firstPage = await c.listRuns();
    assert.equal(firstPage.runs.length, 50, 'default page');
    assert.deepEqual(
      firstPage.runs.map((r) => r.id),
      newestFirst.slice(0, 50),
    );
    const seen: number[] = [];
    let before: number | undefined;
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 20, 'paging ends');
      const page = await c.listRuns({ limit: 77, ...(before === undefined ? {} : { before }) });
      seen.push(...page.runs.map((r) => r.id));
      if (page.next === null) break;
      assert.equal(page.next, page.runs[page.runs.length - 1]!.id);
      before = page.next;
    }
    assert.deepEqual(seen, newestFirst);
    const big = await c.listRuns({ limit: 5000 });
    assert.equal(big.runs.length, 1000, 'at most 1000 a page');
    assert.equal(big.next, newestFirst[999]);
    const exact = await c.listRuns({ limit: 5, before: ids[5] });
    assert.deepEqual(
      exact.runs.map((r) => r.id),
      ids.slice(0, 5).reverse(),
    );
    assert.equal(exact.next, null, 'a page that ends exactly at the last run has no next');
    await rejectsWith(c.listRuns({ limit: 0 }), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t('listRuns filters by repository, job, states and since, and pages within a filter', async (c) => {
    const states = ['succeeded', 'failed', 'warning', 'running'] as const;
    const made: RunRecord[] = [];
    for (let i = 0; i < 120; i++) {
      const run = await c.createRun(newRun(i % 2 === 0 ? 'web' : 'db', i, i % 5 === 0 ? '/repos/b' : '/repos/a'));
      made.push(await c.updateRun(run.id, { state: states[i % states.length]! }));
    }
    const expect = (keep: (r: RunRecord) => boolean) =>
      made
        .filter(keep)
        .map((r) => r.id)
        .reverse();
    const all = async (filter: Parameters<Catalog['listRuns']>[0]) => {
      const ids: number[] = [];
      let before: number | undefined;
      for (;;) {
        const page = await c.listRuns({ ...filter, limit: 7, ...(before === undefined ? {} : { before }) });
        ids.push(...page.runs.map((r) => r.id));
        if (page.next === null) return ids;
        before = page.next;
      }
    };
    assert.deepEqual(
      await all({ job: 'web' }),
      expect((r) => r.job === 'web'),
    );
    assert.deepEqual(
      await all({ repo: '/repos/b' }),
      expect((r) => r.repo === '/repos/b'),
    );
    assert.deepEqual(
      await all({ states: ['failed', 'warning'] }),
      expect((r) => r.state === 'failed' || r.state === 'warning'),
    );
    assert.deepEqual(
      await all({ since: at(100) }),
      expect((r) => r.queuedAt >= at(100)),
    );
    // Another spelling of the same instant (no milliseconds, an offset) filters the same.
    const sinceOffset = new Date(Date.parse(at(100)) + 2 * 3600_000).toISOString().replace(/\.000Z$/, '+02:00');
    assert.deepEqual(
      await all({ since: sinceOffset }),
      expect((r) => r.queuedAt >= at(100)),
      sinceOffset,
    );
    assert.deepEqual(
      await all({ since: at(100).replace('.000Z', 'Z') }),
      expect((r) => r.queuedAt >= at(100)),
    );
    await rejectsWith(c.listRuns({ since: 'yesterday' }), 'LFB_ERR_INVALID_ARGUMENT');
    assert.deepEqual(
      await all({ job: 'db', states: ['failed'], since: at(30), repo: '/repos/a' }),
      expect((r) => r.job === 'db' && r.state === 'failed' && r.queuedAt >= at(30) && r.repo === '/repos/a'),
    );
    assert.deepEqual(await c.listRuns({ job: 'nope' }), { runs: [], next: null });
    assert.deepEqual(await c.listRuns({ states: [] }), { runs: [], next: null });
  });

  t('interruptUnfinished marks running and queued runs and their tasks interrupted, once', async (c) => {
    const queued = await c.createRun(newRun('a', 0));
    const running = await c.updateRun((await c.createRun(newRun('b', 0))).id, { state: 'running', startedAt: at(1) });
    const done = await c.updateRun((await c.createRun(newRun('c', 0))).id, { state: 'succeeded', startedAt: at(1), endedAt: at(2) });
    await c.putTask({ runId: running.id, disk: 0, diskName: 'sda', state: 'succeeded', startedAt: at(1), endedAt: at(2), bytesRead: 1, bytesStored: 1 });
    await c.putTask({ runId: running.id, disk: 1, diskName: 'sdb', state: 'running', startedAt: at(2), endedAt: null, bytesRead: 1, bytesStored: 1 });
    const interrupted = await c.interruptUnfinished(at(60));
    assert.deepEqual(
      interrupted.map((r) => r.id),
      [queued.id, running.id],
    );
    for (const r of interrupted) {
      assert.equal(r.state, 'interrupted');
      assert.equal(r.endedAt, at(60));
      assert.deepEqual(await c.getRun(r.id), r);
    }
    assert.equal(interrupted[1]!.startedAt, at(1));
    assert.deepEqual(await c.getRun(done.id), done);
    const tasks = await c.listTasks(running.id);
    assert.deepEqual(
      tasks.map((t) => [t.disk, t.state, t.endedAt]),
      [
        [0, 'succeeded', at(2)],
        [1, 'interrupted', at(60)],
      ],
    );
    assert.deepEqual(await c.interruptUnfinished(at(61)), []);
  });

  t('interruptUnfinished with repositories touches only their runs and tasks (other servers’ runs go on)', async (c) => {
    const mine = await c.updateRun((await c.createRun(newRun('web', 0, '/repos/mine'))).id, { state: 'running', startedAt: at(1) });
    const theirs = await c.updateRun((await c.createRun(newRun('web', 0, '/repos/theirs'))).id, { state: 'running', startedAt: at(1) });
    const queuedMine = await c.createRun(newRun('db', 0, '/repos/mine2'));
    for (const run of [mine, theirs]) {
      await c.putTask({ runId: run.id, disk: 0, diskName: 'sda', state: 'running', startedAt: at(1), endedAt: null, bytesRead: 0, bytesStored: 0 });
    }
    assert.deepEqual(await c.interruptUnfinished(at(60), []), []);
    const interrupted = await c.interruptUnfinished(at(60), ['/repos/mine', '/repos/mine2']);
    assert.deepEqual(
      interrupted.map((r) => [r.id, r.state]),
      [
        [mine.id, 'interrupted'],
        [queuedMine.id, 'interrupted'],
      ],
    );
    assert.deepEqual(await c.getRun(theirs.id), theirs);
    assert.equal((await c.listTasks(theirs.id))[0]!.state, 'running');
    assert.equal((await c.listTasks(mine.id))[0]!.state, 'interrupted');
  });

  t('interruptUnfinished with runningOnly leaves queued runs queued (a server taking over starts them)', async (c) => {
    const running = await c.updateRun((await c.createRun(newRun('web', 0))).id, { state: 'running', startedAt: at(1) });
    const queued = await c.createRun(newRun('db', 0));
    assert.deepEqual(
      (await c.interruptUnfinished(at(60), ['/repos/a'], true)).map((r) => r.id),
      [running.id],
    );
    assert.equal((await c.getRun(queued.id)).state, 'queued');
  });

  t('updateRun with onlyIf changes a run only in that state, and returns it as stored either way', async (c) => {
    const run = await c.createRun(newRun('web', 0));
    const started = await c.updateRun(run.id, { state: 'running', startedAt: at(1) }, 'queued');
    assert.equal(started.state, 'running');
    // Another server's stop of the run it saw queued comes too late: the run is as the start left it.
    assert.deepEqual(await c.updateRun(run.id, { state: 'stopped', endedAt: at(2) }, 'queued'), started);
    await rejectsWith(c.updateRun(run.id + 1, { state: 'stopped' }, 'queued'), 'LFB_ERR_RUN_NOT_FOUND');
  });

  t('putTask records and replaces a run’s tasks; listTasks orders them by disk', async (c) => {
    const run = await c.createRun(newRun('web', 0));
    const other = await c.createRun(newRun('db', 0));
    const task = { runId: run.id, disk: 1, diskName: 'sdb', state: 'running' as const, startedAt: at(1), endedAt: null, bytesRead: 0, bytesStored: 0 };
    await c.putTask(task);
    await c.putTask({ ...task, disk: 0, diskName: 'sda' });
    await c.putTask({ ...task, runId: other.id, disk: 0 });
    const finished = { ...task, state: 'succeeded' as const, endedAt: at(5), bytesRead: 3 * 2 ** 40, bytesStored: 2 ** 35 };
    await c.putTask(finished);
    assert.deepEqual(await c.listTasks(run.id), [{ ...task, disk: 0, diskName: 'sda' }, finished]);
    assert.equal((await c.listTasks(other.id)).length, 1);
    assert.deepEqual(await c.listTasks(other.id + 100), []);
    await rejectsWith(c.putTask({ ...task, runId: other.id + 100 }), 'LFB_ERR_RUN_NOT_FOUND');
  });

  t('log lines get seq 1, 2, 3… in order; readLog pages by afterSeq and limit', async (c) => {
    const run = await c.createRun(newRun('web', 0));
    const other = await c.createRun(newRun('db', 0));
    const levels = ['debug', 'info', 'warn', 'error'] as const;
    const lines = Array.from({ length: 1234 }, (_, i) => ({ at: at(i), level: levels[i % 4]!, message: `line ${i} ✓` }));
    await c.appendLog(run.id, lines.slice(0, 1));
    await c.appendLog(run.id, lines.slice(1, 1200));
    await c.appendLog(other.id, [{ at: at(0), level: 'info', message: 'other run' }]);
    await c.appendLog(run.id, []);
    await c.appendLog(run.id, lines.slice(1200));
    const first = await c.readLog(run.id);
    assert.equal(first.length, 1000, 'default limit');
    const rest = await c.readLog(run.id, 1000);
    assert.deepEqual(
      [...first, ...rest],
      lines.map((l, i) => ({ runId: run.id, seq: i + 1, ...l })),
    );
    assert.deepEqual(
      (await c.readLog(run.id, 10, 3)).map((l) => l.seq),
      [11, 12, 13],
    );
    assert.deepEqual(await c.readLog(run.id, 1234), []);
    assert.deepEqual(await c.readLog(other.id), [{ runId: other.id, seq: 1, at: at(0), level: 'info', message: 'other run' }]);
    await rejectsWith(c.appendLog(other.id + 100, lines.slice(0, 1)), 'LFB_ERR_RUN_NOT_FOUND');
  });

  t('two catalogs on one database appending at once keep seq unique and each append in one piece', async (c, openAnother) => {
    const second = await openAnother();
    const run = await c.createRun(newRun('web', 0));
    const appends: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const lines = Array.from({ length: 5 }, (_, k) => ({ at: at(i), level: 'info' as const, message: `${i}:${k}` }));
      appends.push((i % 2 === 0 ? c : second).appendLog(run.id, lines));
    }
    const runs = Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? c : second).createRun(newRun('db', i))));
    await Promise.all(appends);
    const log = await second.readLog(run.id, 0, 5000);
    assert.deepEqual(
      log.map((l) => l.seq),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    for (let b = 0; b < 200; b += 5) {
      const [batch, k0] = log[b]!.message.split(':');
      assert.equal(k0, '0', 'an append starts at its first line');
      assert.deepEqual(
        log.slice(b, b + 5).map((l) => l.message),
        [0, 1, 2, 3, 4].map((k) => `${batch}:${k}`),
      );
    }
    const ids = (await runs).map((r) => r.id);
    assert.equal(new Set([...ids, run.id]).size, 21, 'run ids are unique across catalogs');
  });

  recordConformanceTests(t);
  readConformanceTests(t);
  labConformanceTests(t);
  leaseConformanceTests(t);
}
