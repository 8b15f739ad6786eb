/**
 * The conformance tests of the catalog's listings for the API: run pages as
 * JSON text, each job's latest run, what the catalog keeps beside a job's
 * copy (the read it was made from: signature and summary) and the
 * repositories' usage samples (catalog-conformance.ts registers them).
 */
import assert from 'node:assert/strict';
import type { Catalog, JobReadRecord, JobRecord, RunFilter, UsageSample } from '../catalog/catalog.js';
import { at, newRun, point, rejectsWith, type ConformanceTest } from './catalog-fixtures.js';

const jobOf = (name: string, minutes: number, repo = '/repos/a'): JobRecord => ({
  repo,
  name,
  jobId: `${name}-id`,
  definition: { name, schedule: 'daily 01:00', retainPoints: minutes },
  updatedAt: at(minutes),
});

const readOf = (job: string, signature: string, extra: Partial<JobReadRecord> = {}): JobReadRecord => ({
  repo: '/repos/a',
  job,
  signature,
  readAt: at(5),
  points: 2,
  damagedPoints: 1,
  unavailablePoints: 0,
  damagedFiles: 1,
  storedBytes: 2 ** 40 + 3,
  lastPointId: `${job}-p2`,
  lastPointAt: at(2),
  ...extra,
});

const sample = (repo: string, minutes: number, bytes: number): UsageSample => ({
  repo,
  at: at(minutes),
  bytes,
  freeBytes: 2 ** 42 - bytes,
  totalBytes: 2 ** 42,
});

/** listRuns' page and listRunsAsJson's for one filter: the same runs, repositories and next, the text parsing to each record. */
async function sameAsJson(c: Catalog, filter: RunFilter): Promise<number> {
  const records = await c.listRuns(filter);
  const texts = await c.listRunsAsJson(filter);
  assert.deepEqual(
    texts.runs.map((r) => JSON.parse(r.json) as unknown),
    records.runs,
    JSON.stringify(filter),
  );
  assert.deepEqual(
    texts.runs.map((r) => r.repo),
    records.runs.map((r) => r.repo),
  );
  assert.equal(texts.next, records.next, JSON.stringify(filter));
  return records.runs.length;
}

export function readConformanceTests(t: ConformanceTest): void {
  t('listRunsAsJson gives listRuns’ pages, each run as JSON text that parses to its record', async (c) => {
    assert.deepEqual(await c.listRunsAsJson(), { runs: [], next: null });
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push((await c.createRun(newRun(i % 2 === 0 ? 'web' : 'db', i, i % 3 === 0 ? '/repos/b' : '/repos/a'))).id);
    // Every field filled, with what JSON must escape or keep whole: quotes, backslashes, control characters, text
    // outside the BMP, integers past 2^32 (to 2^53 - 1), fractional step times.
    const awkward = await c.updateRun(ids[2]!, {
      state: 'failed',
      startedAt: at(3),
      endedAt: at(4),
      bytesRead: 2 ** 53 - 1,
      bytesStored: 2 ** 40 + 7,
      steps: { scan: 13.25, 'open source and previous point': 20.5, data: 5400 },
      errorCode: 'LFB_ERR_SOURCE',
      errorMessage: 'disk "C:\\vm\\d.img" said: \u0001\t\n\u007f é 💾 \u2028',
      pointId: 'p-3',
      changeMethod: 'cbt',
      changeReason: 'the bitmap\'s "name"',
      reportId: 'lab-1',
    });
    assert.equal((await c.listRunsAsJson({ job: awkward.job, states: ['failed'] })).runs.length, 1);
    ids.push((await c.createRun({ ...newRun('web', 20), kind: 'surebackup' })).id);
    await c.updateRun(ids[4]!, { state: 'succeeded', steps: {} });
    const filters: RunFilter[] = [
      {},
      { limit: 5 },
      { limit: 5, before: ids[7]! },
      { limit: 4, before: ids[4]! },
      { repo: '/repos/b' },
      { job: 'db', limit: 2 },
      { kind: 'surebackup' },
      { states: ['failed', 'succeeded'] },
      { since: at(6), limit: 3 },
    ];
    for (const filter of filters) assert.ok((await sameAsJson(c, filter)) > 0, JSON.stringify(filter));
    // Paging through with next gives every run once.
    const seen: number[] = [];
    for (let before: number | undefined; ;) {
      const page = await c.listRunsAsJson({ limit: 5, ...(before === undefined ? {} : { before }) });
      seen.push(...page.runs.map((r) => (JSON.parse(r.json) as { id: number }).id));
      if (page.next === null) break;
      before = page.next;
    }
    assert.deepEqual(seen, [...ids].reverse());
    assert.deepEqual(await c.listRunsAsJson({ states: [] }), { runs: [], next: null });
    await rejectsWith(c.listRunsAsJson({ limit: 0 }), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.listRunsAsJson({ since: 'yesterday' }), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.listRunsAsJson({ states: ['lost' as never] }), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t(
    'latestRuns: each named backup job’s newest run of the repository, none for a job without runs, other repositories’ and SureBackup runs ignored',
    async (c) => {
      const ids: Record<string, number> = {};
      for (let i = 0; i < 30; i++) {
        const job = `vm-${i % 3}`;
        const run = await c.createRun(newRun(job, i));
        ids[job] = run.id;
        await c.createRun(newRun(job, i, '/repos/other'));
      }
      await c.updateRun(ids['vm-1']!, { state: 'failed', errorCode: 'LFB_ERR_SOURCE' });
      // A SureBackup job may share a backup job's name: its runs are not the backup job's.
      await c.createRun({ ...newRun('vm-2', 40), kind: 'surebackup' });
      // So may a copy job: its run keeps its kind, and a listing by kind finds it alone.
      const copy = await c.createRun({ ...newRun('vm-0', 41), kind: 'copy' });
      assert.equal((await c.getRun(copy.id)).kind, 'copy');
      assert.deepEqual(
        (await c.listRuns({ repo: '/repos/a', job: 'vm-0', kind: 'copy' })).runs.map((r) => r.id),
        [copy.id],
      );
      const names = Array.from({ length: 450 }, (_, i) => `vm-${i}`);
      const latest = await c.latestRuns('/repos/a', names);
      assert.deepEqual([...latest.keys()].sort(), ['vm-0', 'vm-1', 'vm-2']);
      for (const job of ['vm-0', 'vm-1', 'vm-2']) assert.deepEqual(latest.get(job), await c.getRun(ids[job]!));
      assert.equal(latest.get('vm-1')!.state, 'failed');
      assert.equal((await c.latestRuns('/repos/a', [])).size, 0);
      assert.equal((await c.latestRuns('/repos/none', ['vm-0'])).size, 0);
    },
  );

  t('recordJobRead records the job, replaces its points and its read at once; deleteJob forgets the read', async (c) => {
    const detail = { parentId: 'web-p1', diskSizes: [2 ** 34, 512], problem: 'block 7 of disk 0 does not match its hash ✗', changes: [{ method: 'hash' }] };
    const points = [point('web', 1), point('web', 2, { health: 'damaged', detail })];
    await c.recordJobRead(jobOf('web', 1), points, readOf('web', 'sig-1'));
    await c.recordJobRead(jobOf('db', 1), [point('db', 1)], readOf('db', 'sig-db', { lastPointId: null, lastPointAt: null, points: 0, storedBytes: 0 }));
    assert.deepEqual(await c.listJobs('/repos/a'), [jobOf('db', 1), jobOf('web', 1)]);
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), points);
    assert.deepEqual(await c.listJobReads('/repos/a'), [
      readOf('db', 'sig-db', { lastPointId: null, lastPointAt: null, points: 0, storedBytes: 0 }),
      readOf('web', 'sig-1'),
    ]);
    assert.deepEqual(await c.listJobReads('/repos/b'), []);

    // A second read replaces all three; a putJob alone (a change through the API) leaves the read as it was.
    const again = [point('web', 3)];
    await c.recordJobRead(jobOf('web', 4), again, readOf('web', 'sig-2', { points: 1, damagedPoints: 0, lastPointId: 'web-p3', lastPointAt: at(3) }));
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), again);
    await c.putJob(jobOf('web', 9));
    assert.deepEqual(
      (await c.listJobReads('/repos/a')).find((r) => r.job === 'web'),
      readOf('web', 'sig-2', { points: 1, damagedPoints: 0, lastPointId: 'web-p3', lastPointAt: at(3) }),
    );
    assert.deepEqual(
      (await c.listJobs('/repos/a')).find((j) => j.name === 'web'),
      jobOf('web', 9),
    );

    await c.deleteJob('/repos/a', 'web');
    assert.deepEqual(
      (await c.listJobReads('/repos/a')).map((r) => r.job),
      ['db'],
    );
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), []);

    await rejectsWith(c.recordJobRead(jobOf('web', 1), [point('db', 1)], readOf('web', 's')), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.recordJobRead(jobOf('web', 1), [], readOf('db', 's')), 'LFB_ERR_INVALID_ARGUMENT');
    assert.deepEqual(await c.listJobs('/repos/a'), [jobOf('db', 1)], 'a refused read records nothing');
  });

  t('two catalogs recording reads of one job at once leave one whole read: its points and its signature together', async (c, openAnother) => {
    const second = await openAnother();
    const setA = Array.from({ length: 40 }, (_, i) => point('web', i + 1, { file: `a-${i}.lbk` }));
    const setB = Array.from({ length: 30 }, (_, i) => point('web', i + 11, { file: `b-${i}.lbk` }));
    for (let round = 0; round < 4; round++) {
      await Promise.all([
        c.recordJobRead(jobOf('web', 1), setA, readOf('web', 'sig-a', { points: 40 })),
        second.recordJobRead(jobOf('web', 2), setB, readOf('web', 'sig-b', { points: 30 })),
      ]);
      const points = await second.listPoints('/repos/a', 'web');
      const [read] = await c.listJobReads('/repos/a');
      const expected = read!.signature === 'sig-a' ? setA : setB;
      assert.equal(JSON.stringify(points), JSON.stringify(expected), `the points of ${read!.signature}, not a mix`);
      assert.equal(read!.points, expected.length);
    }
  });

  t('usage samples: added per repository, listed oldest first in a period, the newest `limit` of it; old ones deleted', async (c) => {
    for (let m = 0; m < 30; m++) await c.addUsageSample(sample('/repos/a', m * 60, 1000 + m));
    await c.addUsageSample(sample('/repos/b', 30, 5));
    // Another spelling of the same instant is the same sample: replaced, not doubled.
    await c.addUsageSample({ ...sample('/repos/a', 0, 999), at: at(0).replace('.000Z', 'Z') });

    const all = await c.listUsageSamples('/repos/a');
    assert.equal(all.length, 30);
    assert.deepEqual(all[0], sample('/repos/a', 0, 999));
    assert.deepEqual(all[29], sample('/repos/a', 29 * 60, 1029));
    assert.deepEqual(
      (await c.listUsageSamples('/repos/a', { since: at(60), until: at(180) })).map((s) => s.bytes),
      [1001, 1002, 1003],
    );
    assert.deepEqual(
      (await c.listUsageSamples('/repos/a', { limit: 3 })).map((s) => s.bytes),
      [1027, 1028, 1029],
      'the newest of the period, oldest first',
    );
    assert.deepEqual(await c.listUsageSamples('/repos/b'), [sample('/repos/b', 30, 5)]);
    assert.deepEqual(await c.listUsageSamples('/repos/c'), []);
    await rejectsWith(c.listUsageSamples('/repos/a', { since: 'last week' }), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.listUsageSamples('/repos/a', { limit: 0 }), 'LFB_ERR_INVALID_ARGUMENT');

    assert.equal(await c.deleteUsageSamplesBefore(at(10 * 60)), 10 + 1, 'ten of /repos/a and the one of /repos/b');
    assert.equal((await c.listUsageSamples('/repos/a'))[0]!.at, at(10 * 60));
    assert.deepEqual(await c.listUsageSamples('/repos/b'), []);
  });
}
