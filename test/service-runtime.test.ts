import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { openCatalog, type Catalog, type RunRecord } from '../src/catalog/index.js';
import type { Logger } from '../src/core/log.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { cli, rng, randomBytes, tempDir, until } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A clock the test moves by hand; the runtime asks it for every decision. */
class ManualClock {
  constructor(public t: number) {}
  now(): Date {
    return new Date(this.t);
  }
}

const runsOf = async (catalog: Catalog, job: string): Promise<RunRecord[]> => [...(await catalog.listRuns({ job, limit: 100 })).runs].reverse();

test(
  'the runtime stops a run whose window closes (recorded stopped, not retried) and runs once at start-up a schedule missed while it was down',
  { timeout: 180_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const catalog = await openCatalog(join(dir, 'state'));
    let runtime: ServiceRuntime | undefined;
    try {
      const repo = join(dir, 'repo');
      const big = join(dir, 'big.img');
      await writeFile(big, randomBytes(rng(5), 384 * 1024 * 1024));
      const small = join(dir, 'small.img');
      await writeFile(small, randomBytes(rng(6), 1024 * 1024));
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      for (const args of [
        ['big', '--disk', big, '--schedule', '* * * * * *', '--window', '10:00-10:05', '--retry-delay', '1s'],
        ['daily', '--disk', small, '--schedule', '15 10 * * *'],
      ]) {
        const r = await cli(['job', 'create', args[0]!, '--repo', repo, ...args.slice(1)]);
        assert.equal(r.code, 0, r.stderr);
      }
      const clock = new ManualClock(Date.parse('2026-03-02T10:04:50Z'));
      const make = (): ServiceRuntime =>
        new ServiceRuntime({
          catalog,
          service: new LifeboatService(clock),
          repos: [repo],
          stateDir: join(dir, 'state'),
          clock,
          logger: quiet,
          timeZone: 'UTC',
          maxSleepMs: 100,
        });
      runtime = make();
      await runtime.start();
      clock.t += 2_000;
      runtime.tick();
      const first = await until('the scheduled run to be going', async () => (await runsOf(catalog, 'big')).find((r) => r.state === 'running'));
      assert.equal(first.trigger, 'schedule');
      // The window closes while the run is going: it is stopped at its next safe point.
      clock.t = Date.parse('2026-03-02T10:05:01Z');
      runtime.tick();
      const stopped = await until('the run to end', async () => {
        const r = await catalog.getRun(first.id);
        return r.state === 'running' ? undefined : r;
      });
      assert.equal(stopped.state, 'stopped');
      assert.equal(stopped.errorCode, 'LFB_ERR_INTERRUPTED');
      const lines = (await catalog.readLog(first.id)).map((l) => l.message);
      assert.ok(
        lines.some((l) => /^stopped: its window closed; the run stopped at a safe point/.test(l)),
        lines.join('\n'),
      );
      // Later fires wait for the window; a stopped run is not retried.
      clock.t += 5_000;
      runtime.tick();
      await new Promise((r) => setTimeout(r, 500));
      const after = await runsOf(catalog, 'big');
      assert.deepEqual(
        after.filter((r) => r.state === 'running' || r.trigger === 'retry'),
        [],
      );
      await runtime.close();
      runtime = undefined;

      // Down from 10:05:06 to 10:30: the 10:15 fire of "daily" was missed and its (any-time) window is open: one run at start-up.
      clock.t = Date.parse('2026-03-02T10:30:00Z');
      runtime = make();
      await runtime.start();
      const missed = await until('the missed run', async () => (await runsOf(catalog, 'daily')).find((r) => r.state === 'succeeded'));
      assert.equal(missed.trigger, 'missed');
      assert.equal((await runsOf(catalog, 'daily')).length, 1);
      assert.ok(missed.pointId);
      // The queued runs of "big" are still waiting for tomorrow's window.
      assert.ok((await runsOf(catalog, 'big')).every((r) => r.state !== 'running' && r.state !== 'succeeded'));
    } finally {
      await runtime?.close();
      await catalog.close();
      await cleanup();
    }
  },
);
