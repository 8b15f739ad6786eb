// A run's live progress reaches whoever watches it, also when the watch
// began while the run was still queued: the console opens a run's event
// stream right after "Run now", and under load the run starts later. In
// process (the runtime with its in-process runner, SQLite catalog): no root,
// QEMU or port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { openCatalog } from '../src/catalog/index.js';
import { systemClock } from '../src/core/clock.js';
import type { Logger } from '../src/core/log.js';
import type { RunProgress } from '../src/service/http/deps.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { cli, rng, randomBytes, tempDir, until } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

test('watch() of a queued run gets its progress once it starts; an unwatch before the start is kept', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const catalog = await openCatalog(join(dir, 'state'));
  let runtime: ServiceRuntime | undefined;
  try {
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    for (const [name, seed] of [
      ['first', 1],
      ['second', 2],
    ] as const) {
      const disk = join(dir, `${name}.img`);
      await writeFile(disk, randomBytes(rng(seed), 96 * 1024 * 1024));
      const r = await cli(['job', 'create', name, '--repo', repo, '--disk', disk]);
      assert.equal(r.code, 0, r.stderr);
    }
    runtime = new ServiceRuntime({
      catalog,
      service: new LifeboatService(systemClock),
      repos: [repo],
      stateDir: join(dir, 'state'),
      clock: systemClock,
      logger: quiet,
      maxTasks: 1,
      schedules: false,
    });
    await runtime.start();
    const first = await runtime.runNow(repo, 'first', 'api');
    const second = await runtime.runNow(repo, 'second', 'api');
    // The cap is one task: the second run waits in the queue while the first runs.
    await until('the first run to be going', async () => ((await catalog.getRun(first.id)).state === 'running' ? true : undefined));
    assert.equal((await catalog.getRun(second.id)).state, 'queued');
    const seen: RunProgress[] = [];
    const dropped: RunProgress[] = [];
    runtime.watch(second.id, (p) => seen.push(p));
    const unwatch = runtime.watch(second.id, (p) => dropped.push(p));
    unwatch();
    const ended = await until('the second run to end', async () => {
      const r = await catalog.getRun(second.id);
      return r.state === 'queued' || r.state === 'running' ? undefined : r;
    });
    assert.equal(ended.state, 'succeeded');
    assert.ok(seen.length > 0, 'the watcher saw the run it watched while it was queued');
    assert.equal(seen.at(-1)!.bytesDone, seen.at(-1)!.bytesTotal, 'up to its end');
    assert.equal(dropped.length, 0, 'an unwatched listener hears nothing');
  } finally {
    await runtime?.close();
    await catalog.close();
    await cleanup();
  }
});
