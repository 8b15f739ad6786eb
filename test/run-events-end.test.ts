/**
 * A run's event stream sends `end` as soon as the run's end is recorded, not
 * at the stream's next look at the catalog: the console shows a finished run
 * at once, and a script that follows a run learns its end without polling
 * (a poll every few milliseconds costs the server more CPU than a small
 * incremental backup). In process (the API's fixture); no root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeFixture, parseEvents, createWeb01 } from './http-api-fixture.js';

test("a run's event stream ends when the run does, long before the stream's next catalog read", { timeout: 60_000 }, async () => {
  // The stream reads the catalog every 10 s: only the runner's word can end it sooner.
  const fx = await makeFixture({ events: { pollMs: 10_000, keepaliveMs: 60_000 } });
  try {
    const headers = { authorization: `Bearer ${fx.tokens.operator}` };
    await createWeb01(fx);
    for (let i = 0; i < 3; i++) {
      const started = await fx.api.inject({ method: 'POST', url: `/api/v1/repositories/${fx.repoName}/jobs/web01/run`, headers });
      assert.equal(started.statusCode, 202, started.body);
      const { id } = JSON.parse(started.body) as { id: number };
      const t0 = performance.now();
      const events = await fx.api.inject({ method: 'GET', url: `/api/v1/runs/${id}/events`, headers });
      const ms = performance.now() - t0;
      await fx.runner.ended(id);
      const parsed = parseEvents(events.body);
      assert.deepEqual(parsed.at(-1), { event: 'end', data: { id, state: 'succeeded' } }, events.body);
      const runs = parsed.filter((e) => e.event === 'run').map((e) => (e.data as { state: string }).state);
      assert.equal(runs.at(-1), 'succeeded', 'the last record sent is the ended run');
      assert.ok(
        parsed.some((e) => e.event === 'log' && /^made (full|increment)/.test((e.data as { message: string }).message)),
        'the log written at the end came before `end`',
      );
      // A 3 MiB backup takes well under a second; the stream's next catalog read would be 10 s after its first.
      assert.ok(ms < 5000, `the stream ended ${ms.toFixed(0)} ms after it opened`);
    }
  } finally {
    await fx.close();
  }
});
