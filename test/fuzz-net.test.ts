import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rpcServerTarget, runFuzz } from '../src/testing/fuzz/index.js';

// The whole RPC server (record marking, dispatch, limits) takes connections only from a TCP listener: this file listens on a loopback port.
test('fuzz: 3000 seeded connections to an RpcServer serving NFS, MOUNT and the portmapper find nothing', { timeout: 5 * 60_000 }, async () => {
  const report = await runFuzz({ seed: 12, iterations: 3000, targets: [rpcServerTarget()] });
  assert.deepEqual(
    report.findings.map((f) => `[${f.kind}] at ${f.where}: ${f.message}; input ${f.input.toString('hex').slice(0, 2048)}`),
    [],
  );
  const s = report.targets['rpc-server']!;
  assert.equal(s.inputs, 3000);
  assert.ok(s.valid > 100 && s.accepted > 1000 && s.rejected > 0, JSON.stringify(s));
});
