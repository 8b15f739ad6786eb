import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve } from '../src/app/index.js';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { DEFAULT_CACHE_BUDGET, DEFAULT_DISK_CACHE_BUDGET } from '../src/recovery/index.js';
import { MiB, cli, tempDir } from './helpers.js';

test('serve hands its cache budgets to instant recovery (512 MiB of memory and 2 GiB of disk unless told)', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    for (const [cacheBudgetBytes, want, diskCacheBudgetBytes, wantDisk] of [
      [undefined, DEFAULT_CACHE_BUDGET, undefined, DEFAULT_DISK_CACHE_BUDGET],
      [64 * MiB, 64 * MiB, 0, 0],
    ] as const) {
      const running = await serve({
        repo,
        bind: '127.0.0.1',
        nfsPort: 0,
        mountPort: 0,
        nbdPort: 0,
        portmap: false,
        allow: '127.0.0.0/8',
        cacheBudgetBytes,
        diskCacheBudgetBytes,
        clock: systemClock,
        logger: createLogger('error'),
        say: () => undefined,
      });
      try {
        assert.equal(running.recovery.blockCache.budgetBytes, want);
        assert.equal(running.recovery.diskCacheBudgetBytes, wantDisk);
      } finally {
        await running.close();
      }
    }
    assert.equal(DEFAULT_CACHE_BUDGET, 512 * MiB);
    assert.equal(DEFAULT_DISK_CACHE_BUDGET, 2048 * MiB);
  } finally {
    await cleanup();
  }
});
