// Kill -9 of a writer of object files (ObjectFileStorage on S3, a real Ceph radosgw: ceph-fixture.ts) at random
// moments, 6 times on one bucket: after each kill every file is one of its committed states, every root decodes,
// the next writer commits, and collect(0) leaves only what roots name (object-files-crash-harness.ts). Then the
// same on an object-lock bucket, where radosgw ignores If-None-Match and create-only puts are emulated (s3-versions.ts).
// Unlike a local folder, S3 may carry out a request of the writer after its death (a PUT radosgw had whole): the
// files are read just after the kill and again 1 s later, both times in a state the journal allows, and the next
// writer starts after that (in a loaded run, about one kill in 15 lands so; the summary's lateLanded counts them).
// LFB_CRASH_SEED=<n> replays a seed; LFB_CRASH_SOAK=<k> runs k times the rounds; LFB_CRASH_VERBOSE=1 tells each round.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useCephS3 } from './ceph-fixture.js';
import { crashRounds } from './object-files-crash-harness.js';

const ceph = useCephS3();
const SEED = Number(process.env['LFB_CRASH_SEED'] ?? 20261206);
const SOAK = Number(process.env['LFB_CRASH_SOAK'] ?? 1);
if (!Number.isSafeInteger(SEED) || !Number.isSafeInteger(SOAK) || SOAK < 1) throw new Error('LFB_CRASH_SEED and LFB_CRASH_SOAK are whole numbers (SOAK ≥ 1)');

for (const [label, objectLock] of [
  ['radosgw', false],
  ['radosgw, object-lock bucket', true],
] as const)
  test(`object files, ${label}: kills -9 of a writer at random moments leave only committed states (seed ${SEED})`, { timeout: 180_000 * SOAK }, async () => {
    const bucket = ceph().bucket(objectLock ? 'crash-lock' : 'crash');
    const s = await crashRounds({
      label,
      spec: { kind: 's3', url: `s3://${bucket}/repo`, connection: ceph().connection, objectLock },
      seed: SEED,
      rounds: 6 * SOAK,
      minMs: 50,
      maxMs: 1500,
      maxFileBytes: 320 * 1024,
      settleMs: 1000,
      collectEvery: 3,
    });
    process.stderr.write(`object-files-crash-s3 (${label}): ${JSON.stringify(s)}\n`);
    assert.ok(s.steps > 0, 'the writers committed something');
  });
