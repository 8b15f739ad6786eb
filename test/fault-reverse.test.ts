import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backupOn, faultSweep, jobTemplate } from './fault-harness.js';
import { tempDir } from './helpers.js';

/**
 * Reverse incremental, with a full and a rollback in the repository: the run
 * brings the full forward in place and writes the blocks it replaces into a
 * new rollback. A fault at any storage call of it (EIO at each in turn;
 * ENOSPC, short writes and lost fsyncs at 24 spread over it) fails it
 * cleanly, and both points it started from restore bit-exact.
 */
test('faults: a reverse-incremental run fails cleanly at every storage call', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'reverse', retainPoints: 5 }, [0, 1], 1400);
        assert.equal(t.expected.size, 2);
        return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, 2) };
      },
      { others: 24 },
    );
    console.log(
      `reverse-incremental run: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} failed cleanly, ${r.completed} completed)`,
      r.byOp,
    );
    assert.ok(r.calls > 30 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});
