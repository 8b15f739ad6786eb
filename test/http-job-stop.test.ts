/**
 * POST …/jobs/{job}/stop stops every queued and running run of the job, also
 * when one of them ends by itself between the listing and its stop (its stop
 * then says it has ended): the others are stopped all the same, and the
 * answer names those that were. In process (fastify inject); no root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LifeboatError } from '../src/core/errors.js';
import { makeFixture } from './http-api-fixture.js';

test("a job's stop stops each of its runs, when one ended by itself meanwhile too", async () => {
  const fx = await makeFixture();
  try {
    assert.equal(
      (
        await fx.api.inject({
          method: 'POST',
          url: `/api/v1/repositories/${fx.repoName}/jobs`,
          headers: { authorization: `Bearer ${fx.tokens.admin}` },
          payload: { name: 'vm', disks: [fx.source] },
        })
      ).statusCode,
      201,
    );
    const make = (state: 'running' | 'queued') =>
      fx.catalog
        .createRun({ repo: fx.repo, job: 'vm', kind: 'backup', trigger: 'api', attempt: 1, retryOf: null, queuedAt: new Date().toISOString() })
        .then((r) => (state === 'running' ? fx.catalog.updateRun(r.id, { state, startedAt: new Date().toISOString() }) : r));
    const ended = await make('running');
    const queued = await make('queued');
    const asked: number[] = [];
    // The runner as the server's: the run that ended by itself before its stop is refused as ended.
    fx.runner.stop = async (id: number): Promise<void> => {
      asked.push(id);
      if (id === ended.id) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `run ${id} has ended (succeeded): there is nothing to stop`);
    };
    const res = await fx.api.inject({
      method: 'POST',
      url: `/api/v1/repositories/${fx.repoName}/jobs/vm/stop`,
      headers: { authorization: `Bearer ${fx.tokens.operator}` },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(asked.sort(), [ended.id, queued.id].sort(), 'both runs were asked to stop');
    assert.deepEqual((res.json() as { stopped: number[] }).stopped, [queued.id]);
  } finally {
    await fx.close();
  }
});
