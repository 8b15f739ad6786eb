import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixedClock } from '../src/core/clock.js';
import { compactJob } from '../src/methods/compact.js';
import { Repository } from '../src/repository/index.js';
import { day, faultSweep, jobTemplate } from './fault-harness.js';
import { tempDir } from './helpers.js';

/**
 * Forever-forward keeping 2 points after 4 runs: two merges left dead space
 * in the full. `compact` rewrites the full under a temporary name and renames
 * it over the old one. A fault at any storage call (EIO at each in turn;
 * ENOSPC, short writes and lost fsyncs at 24 spread over it) fails it
 * cleanly, and both points restore bit-exact from whichever full is there.
 */
test('faults: compact fails cleanly at every storage call; every point restores bit-exact', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    let compacted = 0;
    const r = await faultSweep(
      work,
      async () => {
        const t = await jobTemplate(work, { method: 'forever', retainPoints: 2 }, [0, 1, 2, 3], 1700);
        return {
          job: 'vm',
          expected: t.expected,
          current: t.current,
          run: async (storage) => {
            const res = await compactJob(await Repository.open(t.repoDir, { storage }), 'vm', fixedClock(day(4)));
            compacted = Math.max(compacted, res.files.length);
          },
        };
      },
      { others: 24 },
    );
    console.log(`compact: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} failed cleanly, ${r.completed} completed)`, r.byOp);
    assert.equal(compacted, 1, 'the full had dead space to drop');
    assert.ok(r.calls > 20 && r.failed > r.calls / 2);
  } finally {
    await cleanup();
  }
});
