import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backupOn, faultSweep, jobTemplate } from './fault-harness.js';
import { tempDir } from './helpers.js';

// Every storage call of the run gets an EIO in turn; ENOSPC, short writes and lost fsyncs go to 24 calls spread over the run.
test('faults: a full backup fails cleanly at every storage call, and the next run makes the point', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'forward', retainPoints: 10 }, [], 1200);
        return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, 0) };
      },
      { others: 24 },
    );
    console.log(`full backup: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} runs failed cleanly, ${r.completed} completed)`, r.byOp);
    assert.ok(r.calls > 20 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});

test('faults: an incremental backup fails cleanly at every storage call; earlier points restore bit-exact', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'forward', retainPoints: 10 }, [0, 1], 1202);
        return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, 2) };
      },
      { others: 24 },
    );
    console.log(
      `incremental backup: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} runs failed cleanly, ${r.completed} completed)`,
      r.byOp,
    );
    assert.ok(r.calls > 20 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});
