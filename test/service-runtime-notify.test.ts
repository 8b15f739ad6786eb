/**
 * What the runtime tells of ended runs (onRunEnded: the journal line, and
 * webhooks) cannot take the server down: a notifier that throws or rejects
 * is logged, and the runtime goes on running jobs. In the test's process, a
 * SQLite catalog in a temporary folder; no root, QEMU or listening port.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { openCatalog, type Catalog, type RunRecord } from '../src/catalog/index.js';
import { systemClock } from '../src/core/clock.js';
import type { Logger } from '../src/core/log.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { cli, randomBytes, rng, tempDir, until } from './helpers.js';

/** A repository with one job `vm` of a 1 MiB disk, and a catalog; the runtime the test makes is closed with them in every outcome. */
async function setUp(
  t: TestContext,
  prefix: string,
  seed: number,
): Promise<{ dir: string; repo: string; catalog: Catalog; opened: { runtime?: ServiceRuntime } }> {
  const { dir, cleanup } = await tempDir(prefix);
  const opened: { catalog?: Catalog; runtime?: ServiceRuntime } = {};
  // One hook, in this order: the folder goes once nothing writes into it (a failing hook skips the ones after it).
  t.after(async () => {
    try {
      await opened.runtime?.close();
      await opened.catalog?.close();
    } finally {
      await cleanup();
    }
  });
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  await writeFile(disk, randomBytes(rng(seed), 1024 * 1024));
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', 'vm', '--repo', repo, '--disk', disk],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  const catalog = await openCatalog(join(dir, 'state'));
  opened.catalog = catalog;
  return { dir, repo, catalog, opened };
}

for (const how of ['throws', 'rejects'] as const) {
  test(`a notifier of ended runs that ${how} is logged; the runtime goes on`, async (t) => {
    const { dir, repo, catalog, opened } = await setUp(t, 'lifeboat-runtime-notify-', 3);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => void process.off('unhandledRejection', onUnhandled));
    const errors: string[] = [];
    const logger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: (message) => void errors.push(message) };
    const told: number[] = [];
    const runtime = new ServiceRuntime({
      catalog,
      service: new LifeboatService(systemClock),
      repos: [repo],
      stateDir: join(dir, 'state'),
      clock: systemClock,
      logger,
      onRunEnded: (run: RunRecord) => {
        told.push(run.id);
        if (how === 'throws') throw new Error('the webhook is down');
        return Promise.reject(new Error('the webhook is down'));
      },
    });
    opened.runtime = runtime;
    await runtime.start();

    for (let i = 0; i < 2; i++) {
      const run = await runtime.runNow(repo, 'vm', 'manual');
      const ended = await until(`run ${run.id} to end`, async () => {
        const r = await catalog.getRun(run.id);
        return r.state === 'queued' || r.state === 'running' ? undefined : r;
      });
      assert.equal(ended.state, 'succeeded');
      await until(`run ${run.id} to be told`, async () => (told.includes(run.id) && runtime.runningIds().length === 0 ? true : undefined));
    }
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
    assert.equal(errors.filter((e) => e.includes('reporting')).length, 2, errors.join('\n'));
  });
}

test("a backup run's end waits for beforeRunEnds (the server's catalog refresh), while its job still counts as written; a failing one is logged and the run ends all the same", async (t) => {
  const { dir, repo, catalog, opened } = await setUp(t, 'lifeboat-runtime-before-end-', 4);
  const warnings: string[] = [];
  const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (message) => void warnings.push(message), error: () => undefined };
  const seen: { writing: boolean; state: string; endedAt: string | null; at: number }[] = [];
  let fail = false;
  const runtime: ServiceRuntime = new ServiceRuntime({
    catalog,
    service: new LifeboatService(systemClock),
    repos: [repo],
    stateDir: join(dir, 'state'),
    clock: systemClock,
    logger,
    beforeRunEnds: async (root, job) => {
      const run = (await catalog.listRuns({ repo: root, job, limit: 1 })).runs[0]!;
      seen.push({ writing: runtime.isRunning(root, job), state: run.state, endedAt: run.endedAt, at: Date.now() });
      await new Promise((r) => setTimeout(r, 300));
      if (fail) throw new Error('the job folder cannot be read');
    },
  });
  opened.runtime = runtime;
  await runtime.start();
  for (const failing of [false, true]) {
    fail = failing;
    const run = await runtime.runNow(repo, 'vm', 'manual');
    const ended = await until(`run ${run.id} to end`, async () => {
      const r = await catalog.getRun(run.id);
      return r.state === 'queued' || r.state === 'running' ? undefined : r;
    });
    const endSeenAt = Date.now();
    assert.equal(ended.state, 'succeeded');
    const hook = seen.at(-1)!;
    assert.deepEqual({ writing: hook.writing, state: hook.state, endedAt: hook.endedAt }, { writing: true, state: 'running', endedAt: null });
    assert.ok(endSeenAt - hook.at >= 290, `the run was recorded ended ${endSeenAt - hook.at} ms after the hook began: it did not wait`);
    // The recorded end is when the backup's work ended, not when the refresh did.
    assert.ok(Date.parse(ended.endedAt!) <= hook.at, `endedAt ${ended.endedAt} is after the hook began`);
  }
  assert.equal(seen.length, 2);
  assert.equal(warnings.filter((w) => w.includes('refreshing the catalog')).length, 1, warnings.join('\n'));
});
