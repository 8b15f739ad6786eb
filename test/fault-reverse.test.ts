import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backupScenario, jobTemplate, sweepInTempDir } from './fault-harness.js';

/**
 * Reverse incremental, with a full and a rollback in the repository: the run
 * brings the full forward in place and writes the blocks it replaces into a
 * new rollback. A fault at any storage call of it (EIO at each in turn;
 * ENOSPC, short writes and lost fsyncs at 24 spread over it) fails it
 * cleanly, and both points it started from restore bit-exact.
 */
test('faults: a reverse-incremental run fails cleanly at every storage call', { timeout: 120_000 }, async () => {
  const r = await sweepInTempDir(
    'reverse-incremental run',
    async (work) => {
      const t = await jobTemplate(work, { method: 'reverse', retainPoints: 5 }, [0, 1], 1400);
      assert.equal(t.expected.size, 2);
      return backupScenario(t, 2);
    },
    { others: 24 },
  );
  assert.ok(r.calls > 30 && r.failed > r.calls / 2);
});
