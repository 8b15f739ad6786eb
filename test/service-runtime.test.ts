import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { openCatalog, type Catalog, type RunRecord } from '../src/catalog/index.js';
import type { Logger } from '../src/core/log.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { LockFile } from '../src/storage/lock-file.js';
import { cli, rng, randomBytes, tempDir, until } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A clock the test moves by hand; the runtime asks it for every decision. */
class ManualClock {
  constructor(public t: number) {}
  now(): Date {
    return new Date(this.t);
  }
}

/** A runtime for one repository, on the test's clock, deciding at least every 100 ms. */
const runtimeOn = (catalog: Catalog, repo: string, dir: string, clock: ManualClock): ServiceRuntime =>
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
      const make = (): ServiceRuntime => runtimeOn(catalog, repo, dir, clock);
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

test(
  "a scheduled run waits for its job's lock (held by a copy or a capacity tier run) instead of failing; a run a person starts does not wait",
  { timeout: 120_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const catalog = await openCatalog(join(dir, 'state'));
    let runtime: ServiceRuntime | undefined;
    let lock: LockFile | undefined;
    try {
      const repo = join(dir, 'repo');
      const disk = join(dir, 'vm.img');
      await writeFile(disk, randomBytes(rng(7), 1024 * 1024));
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      const created = await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--schedule', '0 0 * * * *', '--retries', '0']);
      assert.equal(created.code, 0, created.stderr);
      // What a copy or a tier run does while it works on the job's files.
      lock = await LockFile.acquire(join(repo, 'jobs', 'vm', 'lock'), 'job "vm"');
      const clock = new ManualClock(Date.parse('2026-03-02T09:59:59Z'));
      runtime = runtimeOn(catalog, repo, dir, clock);
      await runtime.start();
      const manual = await runtime.runNow(repo, 'vm', 'manual');
      const refused = await until('the manual run to end', async () => {
        const r = await catalog.getRun(manual.id);
        return r.state === 'queued' || r.state === 'running' ? undefined : r;
      });
      assert.equal(refused.state, 'failed');
      assert.equal(refused.errorCode, 'LFB_ERR_JOB_LOCKED');
      clock.t = Date.parse('2026-03-02T10:00:00Z');
      runtime.tick();
      const scheduled = await until('the scheduled run to be going', async () =>
        (await runsOf(catalog, 'vm')).find((r) => r.trigger === 'schedule' && r.state === 'running'),
      );
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await catalog.getRun(scheduled.id)).state, 'running', 'still waiting for the lock, not failed');
      const said = (await catalog.readLog(scheduled.id)).map((l) => l.message);
      assert.ok(
        said.some((l) => new RegExp(`^job vm is busy \\(process ${process.pid} on .* holds its lock since .*\\): the run waits for it, up to 10 min$`).test(l)),
        said.join('\n'),
      );
      const endOf = (id: number) =>
        until(`run ${id} to end`, async () => {
          const r = await catalog.getRun(id);
          return r.state === 'running' || r.state === 'queued' ? undefined : r;
        });
      await lock.release();
      lock = undefined;
      const ended = await endOf(scheduled.id);
      assert.equal(ended.state, 'succeeded', ended.errorMessage ?? '');
      assert.ok(ended.pointId);
      // A stop while a run waits ends the wait at once (within a poll of the lock), holding nothing.
      lock = await LockFile.acquire(join(repo, 'jobs', 'vm', 'lock'), 'job "vm"');
      clock.t = Date.parse('2026-03-02T11:00:00Z');
      runtime.tick();
      const next = await until('the next scheduled run to be going', async () =>
        (await runsOf(catalog, 'vm')).find((r) => r.id !== scheduled.id && r.trigger === 'schedule' && r.state === 'running'),
      );
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      await runtime.stop(next.id);
      const stopped = await endOf(next.id);
      assert.equal(stopped.state, 'stopped');
      assert.ok(Date.now() - t0 < 5000, `the stop took ${Date.now() - t0} ms`);
    } finally {
      await lock?.release();
      await runtime?.close();
      await catalog.close();
      await cleanup();
    }
  },
);
