import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { JOB_FILE, Repository, loadJob, writeCheckedJson } from '../src/repository/index.js';
import { backupScenario, changesAndEveryKthRead, jobTemplate, sweepInTempDir } from './fault-harness.js';

/**
 * The repository holds Monday's chain (full, increment) and Saturday's
 * synthetic full; the job is then set to transform previous chains into
 * rollbacks, so Sunday's run writes an increment and turns Monday's chain
 * into rollbacks of the synthetic full (one rollback per point, then the old
 * files deleted). A fault at any storage call fails the run cleanly; every
 * point restores bit-exact, from whichever files hold it. Sampled: EIO at
 * every call that can change the repository and at every third read-only
 * call (pread, size, close, list; most are scans re-reading headers); ENOSPC,
 * short writes and lost fsyncs at 24 calls spread over the run.
 */
test(
  'faults: a run that transforms the previous chain into rollbacks fails cleanly at every call that changes the repository (reads sampled)',
  { timeout: 120_000 },
  async () => {
    const r = await sweepInTempDir(
      'run with a transform into rollbacks',
      async (work) => {
        const t = await jobTemplate(work, { method: 'forward', retainPoints: 10, syntheticFullDays: ['sat'] }, [0, 1, 5], 1600);
        const repo = await Repository.open(t.repoDir);
        const job = await loadJob(repo, 'vm');
        await writeCheckedJson(join(repo.jobDir('vm'), JOB_FILE), { ...job, transformToRollbacks: true });
        return backupScenario(t, 6);
      },
      { eioAt: changesAndEveryKthRead(3), others: 24 },
    );
    assert.ok(r.calls > 40 && r.failed > r.calls / 2);
  },
);
