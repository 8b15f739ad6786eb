/**
 * Backup copy jobs in a real `lifeboat serve`: a copy job on a seconds-level
 * schedule runs by itself after a backup (kind 'copy' in GET /runs, named
 * like the backup job without being it), a copy job chained `--after` the
 * backup job, run-now through the API, `copy run` from the CLI handed to the
 * server, and the copied point restored bit-exact from the target. One
 * server for the file; every answer is checked against the OpenAPI document.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Api, adminToken, lifeboat, scenario, sha256File, waitFor, writeTextDisk, type Run, type RunDetail } from './service-e2e-helpers.js';

interface CopyView {
  name: string;
  job: string;
  toRepo: string;
  schedule: string | null;
  after: string | null;
  nextRunAt: string | null;
  lastRun: { id: number; state: string; pointId: string | null; bytesStored: number } | null;
}

const runsOf = async (api: Api, job: string, kind: 'backup' | 'copy'): Promise<Run[]> =>
  (await api.call<{ runs: Run[] }>('GET', '/api/v1/runs', {}, { job, kind, limit: '200' })).runs.sort((a, b) => a.id - b.id);

test(
  'copy jobs in the server: scheduled, chained after the backup, run now by the API and by the CLI; the copy restores bit-exact',
  { timeout: 120_000 },
  async (t) => {
    const { dir, servers } = await scenario(t, 'lifeboat-copy-service-');
    const repo = join(dir, 'repo');
    const target = join(dir, 'offsite');
    const disk = join(dir, 'vm.img');
    const [sha] = await Promise.all([writeTextDisk(disk, 4), lifeboat(['repo', 'init', repo])]);
    const [token] = await Promise.all([adminToken(repo), lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', disk])]);
    await lifeboat(['backup', 'vm', '--repo', repo]);
    // Named as the backup job: its scheduler key is another job's (copy:…), so the backup job never runs by this schedule.
    await lifeboat(['copy', 'create', 'vm', '--repo', repo, '--to-repo', target, '--job', 'vm', '--schedule', '*/2 * * * * *']);
    await lifeboat(['copy', 'create', 'follow', '--repo', repo, '--to-repo', join(dir, 'second'), '--job', 'vm', '--after', 'vm']);
    const server = await servers.start(repo);
    const api = await Api.connect(server.httpUrl, token);

    // The scheduled copy runs by itself and copies the point the backup made.
    const first = await waitFor('a scheduled copy run that copied a point', 30_000, async () =>
      (await runsOf(api, 'vm', 'copy')).find((r) => r.state === 'succeeded' && r.pointId !== null),
    );
    assert.equal(first.kind, 'copy');
    assert.equal(first.trigger, 'schedule');
    assert.ok(first.bytesStored > 0 && first.bytesStored === first.bytesRead, `bytes copied: ${first.bytesStored}`);
    assert.equal(first.errorCode, null);
    assert.deepEqual(await runsOf(api, 'vm', 'backup'), [], 'the copy job named vm queued no backup of job vm');
    const detail = await api.run(first.id);
    assert.deepEqual(
      detail.tasks.map((k) => [k.disk, k.state]),
      [[0, 'succeeded']],
    );
    assert.ok(
      detail.log.some((l) => l.message.startsWith(`full ${first.pointId!} ← point `)),
      JSON.stringify(detail.log),
    );
    assert.match(server.stderr(), new RegExp(`<6>lifeboat run=${first.id} job=vm .*state=succeeded trigger=schedule kind=copy`));

    // The list and one copy job: settings, the next run, the last run.
    const list = await api.call<{ copies: CopyView[] }>('GET', '/api/v1/repositories/{repo}/copies', { repo: 'repo' });
    assert.deepEqual(
      list.copies.map((c) => [c.name, c.job, c.toRepo, c.schedule, c.after]),
      [
        ['follow', 'vm', join(dir, 'second'), null, 'vm'],
        ['vm', 'vm', target, '*/2 * * * * *', null],
      ],
    );
    const one = await api.call<CopyView>('GET', '/api/v1/repositories/{repo}/copies/{name}', { repo: 'repo', name: 'vm' });
    assert.ok(one.nextRunAt !== null && one.lastRun !== null);
    await api.call('GET', '/api/v1/repositories/{repo}/copies/{name}', { repo: 'repo', name: 'nope' }, {}, 404);

    // The copy on the target restores bit-exact, from the target alone.
    const out = join(dir, 'restored.img');
    await lifeboat(['restore', 'vm', '--repo', target, '--point', first.pointId!, '--to', out]);
    assert.equal(await sha256File(out), sha, 'the copied point restores bit-exact');
    const points = JSON.parse(await lifeboat(['points', 'vm', '--repo', target, '--json'])) as { id: string; copyOf?: { pointId: string } }[];
    assert.equal(points.find((p) => p.id === first.pointId)?.copyOf?.pointId, JSON.parse(await lifeboat(['points', 'vm', '--repo', repo, '--json']))[0].id);

    // A backup through the server queues the chained copy (trigger 'after').
    await lifeboat(['backup', 'vm', '--repo', repo]);
    const chained = await waitFor('the copy chained after the backup', 30_000, async () =>
      (await runsOf(api, 'follow', 'copy')).find((r) => r.state === 'succeeded' && r.trigger === 'after'),
    );
    assert.match(chained.pointId ?? '', /^[0-9a-f]{12}$/);

    // Run now through the API (operator): 202 and a copy run that ends.
    const asked = await api.call<Run>('POST', '/api/v1/repositories/{repo}/copies/{name}/run', { repo: 'repo', name: 'follow' }, {}, 202);
    assert.equal(asked.kind, 'copy');
    assert.equal(asked.trigger, 'api');
    const end = await waitFor('the asked-for copy run to end', 30_000, async () => {
      const r = (await api.call<RunDetail>('GET', '/api/v1/runs/{id}', { id: String(asked.id) })).run;
      return ['queued', 'running'].includes(r.state) ? undefined : r;
    });
    assert.equal(end.state, 'succeeded');
    await api.call('POST', '/api/v1/repositories/{repo}/copies/{name}/run', { repo: 'repo', name: 'nope' }, {}, 404);

    // `copy run` from the CLI is handed to the server: recorded in its catalog.
    const handed = JSON.parse(await lifeboat(['copy', 'run', 'follow', '--repo', repo, '--json'])) as { runId: number; copied: unknown[] };
    assert.equal(handed.copied.length, 0, 'up to date');
    const manual = (await api.run(handed.runId)).run;
    assert.deepEqual([manual.kind, manual.trigger, manual.state, manual.job], ['copy', 'manual', 'succeeded', 'follow']);
  },
);
