import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backupScenario, jobTemplate, sweepInTempDir } from './fault-harness.js';

/**
 * Forever-forward incremental keeping 2 points, with a full and an increment
 * in the repository: the run writes an increment, then merges the oldest
 * increment into the full in place. A fault at any storage call of it (EIO at
 * each in turn; ENOSPC, short writes and lost fsyncs at 24 spread over it)
 * fails it cleanly, and both points it started from restore bit-exact.
 */
test('faults: a forever-forward run (increment + merge into the full) fails cleanly at every storage call', { timeout: 120_000 }, async () => {
  const r = await sweepInTempDir(
    'forever-forward run with merge',
    async (work) => {
      const t = await jobTemplate(work, { method: 'forever', retainPoints: 2 }, [0, 1], 1300);
      assert.equal(t.expected.size, 2);
      return backupScenario(t, 2);
    },
    { others: 24 },
  );
  assert.ok(r.calls > 40 && r.failed > r.calls / 2);
});
