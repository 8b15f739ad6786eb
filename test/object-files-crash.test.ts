// Kill -9 of a writer of object files (ObjectFileStorage on a LocalObjectStore) at random moments, 24 times
// on one store: 10 kills from outside 50–600 ms after the writer is ready, 14 at a random durable step of
// the store (LIFEBOAT_CRASH_AT), which land inside commits and renames far more often. After each kill
// every file is one of its committed states, every root decodes, the next writer commits, and collect(0)
// leaves only what roots name (object-files-crash-harness.ts).
// LFB_CRASH_SEED=<n> replays a seed; LFB_CRASH_SOAK=<k> runs k times the rounds; LFB_CRASH_VERBOSE=1 tells each round.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crashRounds } from './object-files-crash-harness.js';

const SEED = Number(process.env['LFB_CRASH_SEED'] ?? 20261205);
const SOAK = Number(process.env['LFB_CRASH_SOAK'] ?? 1);
if (!Number.isSafeInteger(SEED) || !Number.isSafeInteger(SOAK) || SOAK < 1) throw new Error('LFB_CRASH_SEED and LFB_CRASH_SOAK are whole numbers (SOAK ≥ 1)');

test(`object files, local folder: kills -9 of a writer at random moments leave only committed states (seed ${SEED})`, { timeout: 120_000 * SOAK }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-objcrash-local-'));
  try {
    const s = await crashRounds({
      label: 'local folder',
      spec: { kind: 'local', dir },
      seed: SEED,
      rounds: 10 * SOAK,
      minMs: 50,
      maxMs: 600,
      pointRounds: 14 * SOAK,
      maxPoint: 200,
      collectEvery: 6,
    });
    process.stderr.write(`object-files-crash: ${JSON.stringify(s)}\n`);
    assert.ok(s.steps > 0, 'the writers committed something');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
