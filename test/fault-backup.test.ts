import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backupScenario, jobTemplate, sweepInTempDir } from './fault-harness.js';

// Every storage call of the run gets an EIO in turn; ENOSPC, short writes and lost fsyncs go to 24 calls spread over the run.
test('faults: a full backup fails cleanly at every storage call, and the next run makes the point', { timeout: 120_000 }, async () => {
  const r = await sweepInTempDir('full backup', async (work) => backupScenario(await jobTemplate(work, { method: 'forward', retainPoints: 10 }, [], 1200), 0), {
    others: 24,
  });
  assert.ok(r.calls > 20 && r.failed > r.calls / 2);
});

test('faults: an incremental backup fails cleanly at every storage call; earlier points restore bit-exact', { timeout: 120_000 }, async () => {
  const r = await sweepInTempDir(
    'incremental backup',
    async (work) => backupScenario(await jobTemplate(work, { method: 'forward', retainPoints: 10 }, [0, 1], 1202), 2),
    { others: 24 },
  );
  assert.ok(r.calls > 20 && r.failed > r.calls / 2);
});
