import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixedClock } from '../src/core/clock.js';
import { compactJob } from '../src/methods/compact.js';
import { Repository } from '../src/repository/index.js';
import { day, jobTemplate, sweepInTempDir } from './fault-harness.js';

/**
 * Forever-forward keeping 2 points after 4 runs: two merges left dead space
 * in the full. `compact` rewrites the full under a temporary name and renames
 * it over the old one. A fault at any storage call (EIO at each in turn;
 * ENOSPC, short writes and lost fsyncs at 24 spread over it) fails it
 * cleanly, and both points restore bit-exact from whichever full is there.
 */
test('faults: compact fails cleanly at every storage call; every point restores bit-exact', { timeout: 120_000 }, async () => {
  let compacted = 0;
  const r = await sweepInTempDir(
    'compact',
    async (work) => {
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
  assert.equal(compacted, 1, 'the full had dead space to drop');
  assert.ok(r.calls > 20 && r.failed > r.calls / 2);
});
