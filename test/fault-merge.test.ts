import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backupOn, faultSweep, jobTemplate } from './fault-harness.js';
import { tempDir } from './helpers.js';

/**
 * Forever-forward incremental keeping 2 points, with a full and an increment
 * in the repository: the run writes an increment, then merges the oldest
 * increment into the full in place. A fault at any storage call of it (EIO at
 * each in turn; ENOSPC, short writes and lost fsyncs at 24 spread over it)
 * fails it cleanly, and both points it started from restore bit-exact.
 */
test('faults: a forever-forward run (increment + merge into the full) fails cleanly at every storage call', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'forever', retainPoints: 2 }, [0, 1], 1300);
        assert.equal(t.expected.size, 2);
        return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, 2) };
      },
      { others: 24 },
    );
    console.log(
      `forever-forward run with merge: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} failed cleanly, ${r.completed} completed)`,
      r.byOp,
    );
    assert.ok(r.calls > 40 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});
