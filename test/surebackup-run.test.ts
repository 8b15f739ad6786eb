// runSureBackup in process (root, no QEMU, no server): a real lab network, and sessions faked around it — a veth
// whose far end holds the VM's address in a namespace of its own stands in for the VM's NIC, a serial log that
// already shows the pattern for its console, and a QMP socket that greets but never answers screendump.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers.js';
import { newLabId, runSureBackup, type LabSession, type LabSessions, type LabVmSpec } from '../src/lab/index.js';
import { isLifeboatError } from '../src/core/errors.js';

const run = promisify(execFile);
const ip = (...args: string[]): Promise<unknown> => run('ip', args, { timeout: 10_000 });

/** A QMP monitor that greets, accepts qmp_capabilities and calls `onScreendump` for a screendump it never answers. */
async function silentMonitor(path: string, onScreendump: () => void): Promise<{ close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write('{"QMP": {"version": {}, "capabilities": []}}\n');
    s.setEncoding('utf8');
    let buf = '';
    s.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const req = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: string };
        buf = buf.slice(nl + 1);
        if (req.execute === 'screendump') onScreendump();
        else s.write(`${JSON.stringify({ return: {}, id: req.id })}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

test('SIGTERM while the screenshots are taken: the run stops at once with LFB_ERR_INTERRUPTED and removes its lab', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-sb-run-');
  const id = newLabId();
  const vmNetns = `lfbtest-${id}-vm`;
  const stop = new AbortController();
  let abortedAt = 0;
  const monitor = await silentMonitor(join(dir, 'qmp.sock'), () => {
    abortedAt = performance.now();
    stop.abort('SIGTERM');
  });
  const stopped: string[] = [];
  const sessions: LabSessions = {
    async start(req): Promise<LabSession> {
      // The lab made the tap for QEMU; a veth of that name, its far end at the VM's address, takes its place.
      const tap = /ifname=([^,]+)/.exec(req.network)![1]!;
      await ip('link', 'delete', tap);
      await ip('netns', 'add', vmNetns);
      await ip('link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vmNetns);
      await ip('-n', vmNetns, 'addr', 'add', '10.99.0.10/24', 'dev', 'eth0');
      await ip('-n', vmNetns, 'link', 'set', 'eth0', 'up');
      const serialLog = join(dir, 'serial.log');
      await writeFile(serialLog, 'LAB-UP ip=10.99.0.10\n');
      return { name: req.name, pointId: 'p1', serialLog, qmpSocket: join(dir, 'qmp.sock'), qgaSocket: join(dir, 'no-qga.sock'), pid: process.pid };
    },
    async stop(name) {
      stopped.push(name);
    },
    list: async () => [],
  };
  const vm: LabVmSpec = { job: 'web', point: 'latest', bootTimeoutS: 20, serialPattern: 'LAB-UP', ports: [], urls: [], scripts: [], waitForIt: false };
  const stateDir = join(dir, 'labs');
  try {
    await assert.rejects(runSureBackup({ sessions, vms: [vm], stateDir, reportDir: join(dir, 'report'), labId: id, signal: stop.signal }), (e: unknown) =>
      isLifeboatError(e, 'LFB_ERR_INTERRUPTED'),
    );
    assert.ok(abortedAt > 0, 'the run reached its screenshot');
    assert.ok(performance.now() - abortedAt < 5_000, `the run ended ${Math.round(performance.now() - abortedAt)} ms after the signal`);
    assert.deepEqual(stopped, [`sb-${id}-0`]);
    const { stdout } = await run('ip', ['netns', 'list'], { timeout: 10_000 });
    assert.doesNotMatch(stdout, new RegExp(`^lfb-lab-${id}\\b`, 'm'));
    assert.deepEqual(await readdir(stateDir), []);
    assert.ok(!existsSync(join(dir, 'report', 'report.json')), 'an interrupted run writes no report');
  } finally {
    await monitor.close();
    await ip('netns', 'delete', vmNetns).catch(() => undefined);
    await ip('netns', 'delete', `lfb-lab-${id}`).catch(() => undefined);
    await cleanup();
  }
});
