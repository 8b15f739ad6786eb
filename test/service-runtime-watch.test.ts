// A run's live progress reaches whoever watches it, also when the watch
// began while the run was still queued: the console opens a run's event
// stream right after "Run now", and under load the run starts later. A stop
// of a queued run holds even when the scheduler was about to start it. In
// process (the runtime with its in-process runner, SQLite catalog): no root,
// QEMU or port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { type Catalog, openCatalog } from '../src/catalog/index.js';
import { systemClock } from '../src/core/clock.js';
import type { Logger } from '../src/core/log.js';
import type { RunProgress } from '../src/service/http/deps.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { cli, rng, randomBytes, tempDir, until } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The server's runtime over one repository, one task at a time, runs only when asked (no schedules). */
function oneTaskRuntime(catalog: Catalog, repo: string, dir: string): ServiceRuntime {
  return new ServiceRuntime({
    catalog,
    service: new LifeboatService(systemClock),
    repos: [repo],
    stateDir: join(dir, 'state'),
    clock: systemClock,
    logger: quiet,
    maxTasks: 1,
    schedules: false,
  });
}

/** A repository in `dir` with one job per [name, seed, MiB] over a disk of that many random MiB; its path. */
async function repoWithJobs(dir: string, jobs: readonly (readonly [string, number, number])[]): Promise<string> {
  const repo = join(dir, 'repo');
  assert.equal((await cli(['repo', 'init', repo])).code, 0);
  for (const [name, seed, mib] of jobs) {
    const disk = join(dir, `${name}.img`);
    await writeFile(disk, randomBytes(rng(seed), mib * 1024 * 1024));
    const r = await cli(['job', 'create', name, '--repo', repo, '--disk', disk]);
    assert.equal(r.code, 0, r.stderr);
  }
  return repo;
}

test('watch() of a queued run: its progress once it starts, its end once recorded; an unwatch before the start holds', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const catalog = await openCatalog(join(dir, 'state'));
  let runtime: ServiceRuntime | undefined;
  try {
    const repo = await repoWithJobs(dir, [
      ['first', 1, 96],
      ['second', 2, 96],
    ]);
    runtime = oneTaskRuntime(catalog, repo, dir);
    await runtime.start();
    const first = await runtime.runNow(repo, 'first', 'api');
    const second = await runtime.runNow(repo, 'second', 'api');
    // The cap is one task: the second run waits in the queue while the first runs.
    await until('the first run to be going', async () => ((await catalog.getRun(first.id)).state === 'running' ? true : undefined));
    assert.equal((await catalog.getRun(second.id)).state, 'queued');
    const seen: RunProgress[] = [];
    const dropped: RunProgress[] = [];
    // What the catalog held when each watcher heard the end: the end is recorded before it is told.
    const endsHeard: string[] = [];
    const firstEnds: string[] = [];
    runtime.watch(
      second.id,
      (p) => seen.push(p),
      () => void catalog.getRun(second.id).then((r) => endsHeard.push(r.state)),
    );
    runtime.watch(
      first.id,
      () => undefined,
      () => void catalog.getRun(first.id).then((r) => firstEnds.push(r.state)),
    );
    const unwatch = runtime.watch(
      second.id,
      (p) => dropped.push(p),
      () => endsHeard.push('unwatched'),
    );
    unwatch();
    const ended = await until('the second run to end', async () => {
      const r = await catalog.getRun(second.id);
      return r.state === 'queued' || r.state === 'running' ? undefined : r;
    });
    assert.equal(ended.state, 'succeeded');
    assert.ok(seen.length > 0, 'the watcher saw the run it watched while it was queued');
    assert.equal(seen.at(-1)!.bytesDone, seen.at(-1)!.bytesTotal, 'up to its end');
    assert.equal(dropped.length, 0, 'an unwatched listener hears nothing');
    await until('the ends to be heard', async () => (endsHeard.length > 0 && firstEnds.length > 0 ? true : undefined), 5000);
    assert.deepEqual(endsHeard, ['succeeded'], 'the watcher of the queued run heard its end once, after it was recorded; the unwatched one did not');
    assert.deepEqual(firstEnds, ['succeeded'], 'so did the watcher of the running run');
  } finally {
    await runtime?.close();
    await catalog.close();
    await cleanup();
  }
});

test('a queued run stopped while the scheduler starts it ends stopped and never runs, even when the catalog answers late', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const real = await openCatalog(join(dir, 'state'));
  // Every read of a run answers 100 ms late, with what the catalog held when asked (as a catalog on a network
  // can): the scheduler's start and the stop then both read "queued" before either has acted on it.
  const catalog: Catalog = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop !== 'getRun' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v;
      return async (id: number): Promise<unknown> => {
        const answer = await target.getRun(id);
        await new Promise((r) => setTimeout(r, 100));
        return answer;
      };
    },
  });
  let runtime: ServiceRuntime | undefined;
  try {
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(3), 8 * 1024 * 1024));
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk])).code, 0);
    const rt = oneTaskRuntime(catalog, repo, dir);
    runtime = rt;
    await rt.start();
    for (let i = 0; i < 5; i++) {
      const run = await rt.runNow(repo, 'vm', 'api');
      // The stop comes a moment after the start has begun reading the run: a click on Stop right after Run now.
      await new Promise((r) => setTimeout(r, 20 * i));
      await rt.stop(run.id);
      // A start that read "queued" before the stop was written acts within its read's 100 ms.
      await new Promise((r) => setTimeout(r, 600));
      const after = await real.getRun(run.id);
      assert.equal(after.state, 'stopped', `run ${run.id} (stop ${20 * i} ms after the start): stopped, not ${after.state}`);
    }
  } finally {
    await runtime?.close();
    await real.close();
    await cleanup();
  }
});

test('a queued run stopped before it starts: its watchers hear its end', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const catalog = await openCatalog(join(dir, 'state'));
  let runtime: ServiceRuntime | undefined;
  try {
    // The first runs long enough for the second to be stopped in the queue.
    const repo = await repoWithJobs(dir, [
      ['first', 4, 96],
      ['second', 5, 1],
    ]);
    runtime = oneTaskRuntime(catalog, repo, dir);
    await runtime.start();
    const first = await runtime.runNow(repo, 'first', 'api');
    await until('the first run to be going', async () => ((await catalog.getRun(first.id)).state === 'running' ? true : undefined));
    const second = await runtime.runNow(repo, 'second', 'api');
    const heard: string[] = [];
    runtime.watch(
      second.id,
      () => undefined,
      () => void catalog.getRun(second.id).then((r) => heard.push(r.state)),
    );
    await runtime.stop(second.id);
    await until('the end to be heard', async () => (heard.length > 0 ? true : undefined), 2000);
    assert.deepEqual(heard, ['stopped']);
  } finally {
    await runtime?.close();
    await catalog.close();
    await cleanup();
  }
});
