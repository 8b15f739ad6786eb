/**
 * Inputs with which the fuzzer (npm run fuzz) found a fault, shrunk by it,
 * each replayed alone through the target that found it: the target must
 * accept or reject it and report no finding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allTargets, fullGc } from '../src/testing/fuzz/index.js';

interface Regression {
  readonly target: string;
  /** What the fault was, where, and the commit it was found on. */
  readonly found: string;
  readonly hex: string;
}

const REGRESSIONS: readonly Regression[] = [
  {
    target: 'record-marking',
    found:
      'on c785ffa, src/rpc/record-marking.ts RecordReader.feed kept one object per empty non-last fragment: 10,004 of them (40,018 bytes) held 7.7 MB (issue 12, defect 5)',
    hex: '00000000'.repeat(10_004) + '0000',
  },
  {
    target: 'nfs',
    found:
      "before bc7e80e, src/nfs/wire.ts readSattr passed a client's setuid, setgid and sticky bits to the file system: SETATTR of mode 0o7777 (issue 12, defect 8)",
    hex: '00000002000000090100000000000000010000000000000100000fff000000000000000000000000000000000000000000000000',
  },
  {
    target: 'nfs',
    found: 'before bc7e80e, the same through CREATE (UNCHECKED, mode 0o4754)',
    hex: '000000080000000902000000000000000100000000000004662d30300000000000000001000009ec0000000000000000000000000000000100000000',
  },
  {
    target: 'nfs',
    found: 'before bc7e80e, the same through MKDIR (mode 0o7777, an unmutated generated call)',
    hex: '000000090000000901000000000000002200000000000004646565700000000100000fff0000000000000000000000000000000100000000',
  },
];

for (const r of REGRESSIONS) {
  test(`fuzz regression (${r.target}): ${r.found}`, async () => {
    const target = allTargets().find((t) => t.name === r.target);
    assert.ok(target, `no fuzz target ${r.target}`);
    await target.start?.();
    try {
      const verdict = await target.run(Buffer.from(r.hex, 'hex'), { valid: false, gc: fullGc() });
      assert.ok(verdict === 'accepted' || verdict === 'rejected');
    } finally {
      await target.stop?.();
    }
  });
}
