// Two servers of one repository on S3 (Ceph's radosgw) sharing one PostgreSQL catalog, each with its own host side
// (LIFEBOAT_STATE_DIR, as on two hosts): the one holding the scheduler's lease runs the job's schedule and every run,
// the other stands by (its API answers from the shared catalog, a run asked of it is run by the leader, a stop of the
// leader's run is refused with LFB_ERR_STANDBY). The leader killed with -9 mid-run: the standby takes the lease when
// it expires (within 30 s), marks the dead leader's run interrupted, retries it, and goes on with the schedule; every
// point restores bit-exact. A leader stopped with SIGTERM gives the lease up: the standby leads at its next try. The cluster, the catalog's PostgreSQL and both servers are stopped in every outcome.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startPostgresCluster, type PostgresCluster } from '../src/testing/postgres-cluster.js';
import { useCephS3 } from './ceph-fixture.js';
import { cli, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';
import { Api, lifeboat, sha256File, waitFor, writeTextDisk, type Run } from './service-e2e-helpers.js';

const ceph = useCephS3();
let pg: PostgresCluster | undefined;
before(async () => {
  pg = await startPostgresCluster();
});
after(async () => {
  await pg?.stop();
});

/** The ids of the runs a server's log says it started. */
const startedBy = (s: Server): number[] => [...s.log().matchAll(/service: run started \{"run":(\d+)/g)].map((m) => Number(m[1]));

test(
  'two servers share a PostgreSQL catalog: one runs the scheduler, the other stands by and takes over within 30 s of a kill -9',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir('lfb-ha-');
    const servers: Server[] = [];
    try {
      const c = ceph().connection;
      const s3Env = {
        AWS_ENDPOINT_URL: c.endpoint!,
        AWS_REGION: c.region!,
        AWS_ACCESS_KEY_ID: c.credentials!.accessKeyId,
        AWS_SECRET_ACCESS_KEY: c.credentials!.secretAccessKey,
      };
      // The commands' own host side is a third one: they never find either server and hand work to it.
      Object.assign(process.env, s3Env, { LIFEBOAT_STATE_DIR: join(dir, 'host-cli') });
      const hostEnv = (name: string): NodeJS.ProcessEnv => ({ ...process.env, ...s3Env, LIFEBOAT_STATE_DIR: join(dir, name) });
      const catalog = await pg!.createDatabase('ha');

      const repo = `s3://${ceph().bucket('ha')}/repo`;
      const disk = join(dir, 'disk.img');
      const diskSum = await writeTextDisk(disk, 48);
      await lifeboat(['repo', 'init', repo]);
      await lifeboat(['job', 'create', 'web', '--repo', repo, '--disk', disk, '--schedule', '*/4 * * * * *', '--retries', '3', '--retry-delay', '1s']);
      const added = await cli(['user', 'add', 'ops', '--role', 'admin', '--catalog', catalog, '--password-stdin'], {}, 'ha horse battery staple\n');
      assert.equal(added.code, 0, added.stderr);
      const token = (JSON.parse(await lifeboat(['token', 'create', '--user', 'ops', '--catalog', catalog, '--json'])) as { token: string }).token;

      const serve = async (name: string): Promise<Server> => {
        const s = await startServer(repo, ['--state-dir', join(dir, `state-${name}`), '--catalog', catalog, '--no-portmap'], { env: hostEnv(`host-${name}`) });
        servers.push(s);
        return s;
      };
      const a = await serve('a');
      assert.match(a.log(), /this server runs the scheduler/);
      const b = await serve('b');
      assert.match(b.log(), /standing by: another server sharing the catalog runs them/);
      // A backup asked on the standby's host is refused: it could not follow a run going on the leader.
      const onStandby = await cli(['backup', 'web', '--repo', repo], { LIFEBOAT_STATE_DIR: join(dir, 'host-b') });
      assert.equal(onStandby.code, 5, onStandby.stderr);
      assert.match(onStandby.stderr, /stands by: .* runs the scheduler and the runs.*\[LFB_ERR_STANDBY\]/s);
      const api = await Api.connect(b.httpUrl, token);
      const api2 = async (s: Server): Promise<Run[]> => (await Api.connect(s.httpUrl, token)).runs('web');

      // The leader runs the schedule; the standby's API shows the runs from the shared catalog.
      const scheduled = (runs: Run[]): Run[] => runs.filter((r) => r.trigger === 'schedule' && r.state === 'succeeded');
      await waitFor('two scheduled runs', 60_000, async () => (scheduled(await api.runs('web')).length >= 2 ? true : undefined), 500);
      // A run asked of the standby is queued in the catalog and run by the leader.
      const asked = await api.call<Run>('POST', '/api/v1/repositories/{repo}/jobs/{job}/run', { repo: 'repo', job: 'web' }, {}, 202);
      const askedEnd = await waitFor(`run ${asked.id}`, 60_000, async () => {
        const r = (await api.run(asked.id)).run;
        return ['queued', 'running'].includes(r.state) ? undefined : r;
      });
      assert.equal(askedEnd.state, 'succeeded', JSON.stringify(askedEnd));
      assert.ok(startedBy(a).includes(asked.id), 'the leader ran the run asked of the standby');
      assert.deepEqual(startedBy(b), [], 'the standby starts nothing');

      // The standby cannot stop the leader's run; the leader is killed while it runs.
      // A run may end between the listing and the stop: the next running one is taken then.
      let running: Run | undefined;
      for (let i = 0; i < 20 && running === undefined; i++) {
        const candidate = await waitFor('a running run', 60_000, async () => (await api.runs('web')).find((r) => r.state === 'running'), 50);
        const refused = await fetch(`${b.httpUrl}/runs/${candidate.id}/stop`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
        const body = (await refused.json()) as { code: string };
        if (refused.status === 409 && body.code === 'LFB_ERR_STANDBY') running = candidate;
        else assert.match(body.code, /LFB_ERR_INVALID_ARGUMENT/, `stop of run ${candidate.id}: ${refused.status} ${JSON.stringify(body)}`);
      }
      assert.ok(running, 'the standby refused to stop a running run of the leader');
      await kill9(a);
      // Whether the run was still going when the leader died: it had not logged its end.
      const endedBeforeKill = new RegExp(`service: run ended \\{"run":${running.id},`).test(a.log());
      const killedAt = Date.now();

      await waitFor('the standby to take the lease', 30_000, async () => (/this server runs the scheduler/.test(b.log()) ? true : undefined), 200);
      const tookMs = Date.now() - killedAt;
      assert.match(b.log(), /this server runs the scheduler \{[^}]*"takenFrom"/);
      const killed = (await api.run(running.id)).run;
      if (!endedBeforeKill) assert.equal(killed.state, 'interrupted', JSON.stringify(killed));
      // The new leader goes on with the job: the killed run is retried, or the schedule's next run (queued by then) ends the
      // job's failure first (retries follow a job's latest end). Either way a run of the new leader succeeds after it.
      const next = await waitFor('a run of the new leader after the killed one', 60_000, async () =>
        (await api.runs('web')).find((r) => r.id > running.id && r.state === 'succeeded' && startedBy(b).includes(r.id)),
      );
      await waitFor('a scheduled run queued by the new leader', 60_000, async () =>
        scheduled(await api.runs('web')).find((r) => Date.parse(r.queuedAt) > killedAt && startedBy(b).includes(r.id)),
      );
      const after = await api.runs('web');
      process.stdout.write(`# runs: ${after.map((r) => `${r.id}:${r.trigger}:${r.state}${r.retryOf ? `<${r.retryOf}` : ''}`).join(' ')}; next ${next.id}\n`);
      for (const id of startedBy(b)) assert.ok(!startedBy(a).includes(id), `run ${id} was started by one server only`);
      process.stdout.write(
        `# takeover ${(tookMs / 1000).toFixed(1)} s after the kill; runs by the first leader ${startedBy(a).length}, by the second ${startedBy(b).length}\n`,
      );

      // The first server back stands by; the leader stopped with SIGTERM gives the lease up, and it leads at its next try.
      const a2 = await serve('a');
      assert.match(a2.log(), /standing by: another server sharing the catalog runs them/);
      b.proc.kill('SIGTERM');
      await b.exited;
      const stoppedAt = Date.now();
      await waitFor('the lease to pass on a SIGTERM', 10_000, async () => (/this server runs the scheduler/.test(a2.log()) ? true : undefined), 100);
      const handOverMs = Date.now() - stoppedAt;
      await waitFor('a run of the third leader', 60_000, async () => (await api2(a2)).find((r) => r.state === 'succeeded' && startedBy(a2).includes(r.id)));
      process.stdout.write(`# hand-over on SIGTERM ${(handOverMs / 1000).toFixed(1)} s\n`);

      // Every point restores bit-exact (the source did not change).
      const points = JSON.parse(await lifeboat(['points', 'web', '--repo', repo, '--json'])) as { id: string }[];
      assert.ok(points.length >= 4, `${points.length} points`);
      for (const p of [points[0]!, points[points.length - 1]!]) {
        const to = join(dir, `restored-${p.id}.img`);
        await lifeboat(['restore', 'web', '--repo', repo, '--point', p.id, '--to', to]);
        assert.equal(await sha256File(to), diskSum, `point ${p.id}`);
      }
    } finally {
      for (const s of servers) await kill9(s);
      await cleanup();
    }
  },
);
