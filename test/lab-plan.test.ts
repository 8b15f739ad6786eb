import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dnsName, labMac, newLabId, planLabHosts, subnetBase } from '../src/lab/lab-plan.js';

test('a lab plan: MACs from the lab id and index, addresses from .10, DNS-safe unique names', () => {
  assert.deepEqual(planLabHosts('d34029', '10.99.0.0/24', ['web', 'DB_01', 'web']), [
    { name: 'web', mac: '52:54:00:40:29:00', ip: '10.99.0.10' },
    { name: 'db-01', mac: '52:54:00:40:29:01', ip: '10.99.0.11' },
    { name: 'web-2', mac: '52:54:00:40:29:02', ip: '10.99.0.12' },
  ]);
  assert.notEqual(labMac('d34029', 0), labMac('d3402a', 0), 'another lab, another MAC');
  assert.match(newLabId(), /^[0-9a-f]{6}$/);
});

test('names and subnets the plan refuses or repairs', () => {
  assert.equal(dnsName('--Exchange 2019!--'), 'exchange-2019');
  assert.equal(dnsName('___'), 'vm');
  assert.equal(dnsName('a'.repeat(80)).length, 63);
  assert.equal(subnetBase('192.168.7.0/24'), '192.168.7');
  for (const bad of ['10.99.0.0/16', '10.99.0.5/24', '300.1.1.0/24', 'lab'])
    assert.throws(
      () => subnetBase(bad),
      (e: { code?: string }) => e.code === 'LFB_ERR_INVALID_ARGUMENT',
      bad,
    );
  assert.throws(
    () =>
      planLabHosts(
        'abc',
        '10.99.0.0/24',
        Array.from({ length: 241 }, (_, i) => `vm${i}`),
      ),
    /at most 240/,
  );
});

test("a report's id is the run's UTC start and its lab's id, so report folders never repeat and sort by date", async () => {
  const { reportIdOf } = await import('../src/lab/surebackup.js');
  assert.equal(reportIdOf(new Date('2026-12-02T13:15:03.250Z'), 'a3f09c'), '20261202-131503-a3f09c');
  assert.ok(reportIdOf(new Date('2026-12-02T09:00:00Z'), 'ffffff') < reportIdOf(new Date('2026-12-02T10:00:00Z'), '000000'));
});
