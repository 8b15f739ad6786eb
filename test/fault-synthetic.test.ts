import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backupOn, changesAndEveryKthRead, faultSweep, jobTemplate } from './fault-harness.js';
import { tempDir } from './helpers.js';

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
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'forward', retainPoints: 10, syntheticFullDays: ['sat'] }, [0, 1], 1500);
        return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, 5) };
      },
      { eioAt: changesAndEveryKthRead(2), others: 24 },
    );
    console.log(
      `run with a synthetic full: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} failed cleanly, ${r.completed} completed)`,
      r.byOp,
    );
    assert.ok(r.calls > 40 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});
