import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backupScenario, changesAndEveryKthRead, jobTemplate, sweepInTempDir } from './fault-harness.js';

/**
 * Forward incremental with synthetic fulls on Saturdays, a full and an
 * increment in the repository (Monday, Tuesday): Saturday's run writes an
 * increment, builds a synthetic full of it from the chain's stored blocks and
 * deletes the increment. A fault at any storage call fails the run cleanly;
 * both earlier points restore bit-exact. Sampled: EIO at every call that can
 * change the repository and at every other read-only call (pread, size,
 * close, list; most are scans re-reading headers); ENOSPC, short writes and
 * lost fsyncs at 24 calls spread over the run.
 */
test('faults: a run with a synthetic full fails cleanly at every storage call that changes the repository (reads sampled)', { timeout: 120_000 }, async () => {
  const r = await sweepInTempDir(
    'run with a synthetic full',
    async (work) => backupScenario(await jobTemplate(work, { method: 'forward', retainPoints: 10, syntheticFullDays: ['sat'] }, [0, 1], 1500), 5),
    { eioAt: changesAndEveryKthRead(2), others: 24 },
  );
  assert.ok(r.calls > 40 && r.failed > r.calls / 2);
});
