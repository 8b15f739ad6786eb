/**
 * The virtual lab's guest images (test/fixtures/make-lab-image.sh), booted straight from their local files in a
 * throw-away namespace with dnsmasq (test/lab-harness.ts; no src/lab): the good one takes its planned address
 * and name by DHCP, answers ping, HTTP and the guest agent; the damaged one never comes up; and a real guest
 * inside the lab reaches the lab's bridge but never an address outside it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { tempDir, until } from './helpers.js';
import {
  bootLocal,
  buildLabImage,
  buildLabImages,
  hostExternalAddress,
  httpGetIn,
  listenInNetns,
  listenOnHost,
  withNetns,
  withReachableNetns,
  type CountingListener,
} from './lab-harness.js';
import { qgaPing } from './lab-qga.js';

let dir = '';
let cleanup = async (): Promise<void> => undefined;
let images: { good: string; damaged: string };

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-lab-image-'));
  images = await buildLabImages(dir);
});
after(() => cleanup());

const WEB = { name: 'web1', mac: '52:54:00:99:00:10', ip: '10.99.0.10' };

test('the good lab image boots from its local file: its DHCP address and name, ping, HTTP and the guest agent', { timeout: 3 * 60_000 }, async (t) => {
  await withNetns([WEB], async (ns) => {
    const vm = await bootLocal({ image: images.good, netns: ns.netns, tap: await ns.createTap(), mac: WEB.mac, accel: 'tcg', dir: join(dir, 'vm-good') });
    try {
      const up = await vm.waitFor(/LAB-UP ip=(\S+) host=(\S+)/, 60_000);
      const seconds = (performance.now() - vm.startedAt) / 1000;
      assert.ok(up, `no LAB-UP within 60 s; serial:\n${vm.serial()}\ndnsmasq:\n${ns.dnsmasqLog()}`);
      t.diagnostic(`local boot to LAB-UP (TCG): ${seconds.toFixed(1)} s`);
      assert.equal(up[1], WEB.ip);
      assert.equal(up[2], WEB.name);
      assert.ok(await vm.waitFor(/LAB-READY/, 20_000), `no LAB-READY; serial:\n${vm.serial()}`);
      const ping = await ns.exec('ping', ['-c1', '-W2', WEB.ip]);
      assert.equal(ping.code, 0, `ping ${WEB.ip} from the namespace: ${ping.stdout}${ping.stderr}`);
      const http = await httpGetIn(ns.netns, `http://${WEB.ip}/`);
      assert.equal(http.status, 200);
      assert.equal(http.body.trim(), `lifeboat-lab ${WEB.name}`);
      assert.match(vm.serial(), /QGA-UP/);
      const pingStarted = performance.now();
      assert.equal(await qgaPing(vm.qgaSocket, 30_000), '{"return": {}}');
      t.diagnostic(`guest-ping answered in ${Math.round(performance.now() - pingStarted)} ms`);
    } finally {
      await vm.stop();
    }
  });
});

// The damaged guest halts (it costs no CPU while the test waits out its 40 s): it runs beside the probe.
describe('a damaged guest and a probing guest', { concurrency: 2 }, () => {
  test('the damaged lab image never reaches LAB-UP', { timeout: 3 * 60_000 }, async () => {
    const host = { name: 'broken1', mac: '52:54:00:99:00:12', ip: '10.99.0.12' };
    await withNetns([host], async (ns) => {
      const vm = await bootLocal({
        image: images.damaged,
        netns: ns.netns,
        tap: await ns.createTap(),
        mac: host.mac,
        accel: 'tcg',
        dir: join(dir, 'vm-damaged'),
      });
      try {
        assert.equal(await vm.waitFor(/LAB-UP/, 40_000), undefined, `the damaged guest came up:\n${vm.serial()}`);
        // The disk itself booted (the loader ran): it is the kernel that fails.
        assert.match(vm.serial(), /SYSLINUX/);
        assert.doesNotMatch(vm.serial(), /LAB-BOOT/);
      } finally {
        await vm.stop();
      }
    });
  });

  test('isolation: a guest in the lab reaches the lab bridge, never the host external address or another namespace', { timeout: 4 * 60_000 }, async (t) => {
    const host = { name: 'probe1', mac: '52:54:00:99:00:11', ip: '10.99.0.11' };
    await withNetns([host], (ns) =>
      withReachableNetns(async (outside) => {
        const listeners: CountingListener[] = [];
        try {
          const external = await hostExternalAddress();
          const onHost = await listenOnHost('0.0.0.0');
          listeners.push(onHost);
          const inOutside = await listenInNetns(outside.netns, outside.ip);
          listeners.push(inOutside);
          // The control: the same probe reaches a listener inside the lab, so "never" means isolation.
          const inLab = await listenInNetns(ns.netns, ns.gateway);
          listeners.push(inLab);
          const targets = { host: `${external}:${onHost.port}`, outside: `${outside.ip}:${inOutside.port}`, lab: `${ns.gateway}:${inLab.port}` };
          t.diagnostic(`probe targets: ${JSON.stringify(targets)}`);
          const image = await buildLabImage(join(dir, 'lab-probe.img'), join(dir, 'lab-build'), { probe: Object.values(targets) });
          const vm = await bootLocal({ image, netns: ns.netns, tap: await ns.createTap(), mac: host.mac, accel: 'tcg', dir: join(dir, 'vm-probe') });
          try {
            assert.ok(await vm.waitFor(/LAB-UP ip=10\.99\.0\.11 /, 60_000), `no LAB-UP:\n${vm.serial()}`);
            const ends = (target: string) => new RegExp(`PROBE ${target.replace(/\./g, '\\.')} (connected|never)`);
            const host = await vm.waitFor(ends(targets.host), 50_000);
            const out = await vm.waitFor(ends(targets.outside), 10_000);
            const lab = await vm.waitFor(ends(targets.lab), 10_000);
            const serial = vm.serial();
            assert.equal(lab?.[1], 'connected', `the control probe did not reach the lab bridge:\n${serial}`);
            assert.equal(host?.[1], 'never', serial);
            assert.equal(out?.[1], 'never', serial);
          } finally {
            await vm.stop();
          }
          assert.ok(inLab.connections() >= 1);
          assert.equal(onHost.connections(), 0, 'the host listener saw a connection from the lab');
          assert.equal(inOutside.connections(), 0, 'the other namespace saw a connection from the lab');
          // Both outside listeners do take connections from the host: their zero counts above are the guest's.
          await connect(external, onHost.port);
          await connect(outside.ip, inOutside.port);
          await until(
            'the outside listeners counting the host connections',
            async () => (onHost.connections() === 1 && inOutside.connections() === 1) || undefined,
            5000,
          );
        } finally {
          for (const l of listeners) await l.close();
        }
      }),
    );
  });
});

function connect(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port, timeout: 5000 }, () => {
      s.destroy();
      resolve();
    });
    s.on('error', reject);
    s.on('timeout', () => s.destroy(new Error(`connect ${host}:${port} timed out`)));
  });
}
