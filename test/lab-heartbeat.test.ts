// The heartbeat of a lab VM (src/lab/probes.ts heartbeat, guest-agent.ts) against real tools and fakes, no root or
// QEMU: a fake guest agent speaking the agent's protocol on a unix socket, the real qemu-ga listening on one, and
// serial logs written while the heartbeat waits (also a flooding agent and a huge log: memory stays bounded).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { GuestAgentClient } from '../src/lab/guest-agent.js';
import { heartbeat } from '../src/lab/probes.js';
import { tempDir } from './helpers.js';

let dir: string;
let cleanupDir: () => Promise<void>;

before(async () => {
  ({ dir, cleanup: cleanupDir } = await tempDir('lifeboat-lab-heartbeat-'));
});
after(() => cleanupDir());

function stopDaemon(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

/** Runs `fn` while sampling this process's JS heap and buffers; their largest growth over the start, in MiB. */
async function peakGrowth<T>(fn: () => Promise<T>): Promise<{ value: T; grewMiB: number }> {
  const used = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = used();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, used())), 5);
  try {
    const value = await fn();
    return { value, grewMiB: (Math.max(peak, used()) - base) / (1 << 20) };
  } finally {
    clearInterval(sampler);
  }
}

/**
 * A guest agent on a unix socket as QEMU's chardev shows it: connections are accepted at once, but for the first
 * `silentMs` (the guest still booting) what is written is dropped; the stream starts with a stale answer of an
 * earlier client. Then guest-sync-delimited, guest-sync and guest-ping are answered as qemu-ga does.
 */
async function fakeAgent(path: string, silentMs: number): Promise<{ server: Server; requests: string[]; close: () => Promise<void> }> {
  const born = performance.now();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.write('{"return": {"stale": true}}\n');
    let buf = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      if (performance.now() - born < silentMs) return;
      buf += d.replaceAll('\xff', '');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const req = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id?: number } };
        buf = buf.slice(nl + 1);
        requests.push(req.execute);
        if (req.execute === 'guest-sync-delimited') s.write(`\xff${JSON.stringify({ return: req.arguments?.id })}\n`, 'latin1');
        else if (req.execute === 'guest-sync') s.write(`${JSON.stringify({ return: req.arguments?.id })}\n`);
        else if (req.execute === 'guest-ping') s.write('{"return": {}}\n');
        else s.write(`${JSON.stringify({ error: { class: 'CommandNotFound', desc: `The command ${req.execute} has not been found` } })}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    server,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

test('guest agent client: sync skips a stale answer, commands return, an unknown command fails with the agent words', async () => {
  const agent = await fakeAgent(join(dir, 'client-qga.sock'), 0);
  try {
    const c = await GuestAgentClient.connect(join(dir, 'client-qga.sock'));
    try {
      await c.sync(2_000);
      assert.deepEqual(await c.execute('guest-ping'), {});
      await assert.rejects(c.execute('guest-frobnicate'), /the guest agent refused guest-frobnicate: The command guest-frobnicate has not been found/);
    } finally {
      c.close();
    }
  } finally {
    await agent.close();
  }
});

test('guest agent client: an agent flooding its socket with one endless line fails the client, and memory stays bounded', async () => {
  const sock = join(dir, 'flood-qga.sock');
  let sent = 0;
  const chunk = Buffer.alloc(1 << 20, 'x');
  const flood = createServer((s) => {
    s.on('error', () => undefined);
    const more = (): void => {
      while (sent < 400 * (1 << 20) && !s.destroyed) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', more);
      }
    };
    more();
  });
  await new Promise<void>((resolve) => flood.listen(sock, resolve));
  try {
    const c = await GuestAgentClient.connect(sock);
    try {
      const { grewMiB } = await peakGrowth(() => assert.rejects(c.sync(20_000), /the guest agent sent more than 1 MiB without a line end/));
      assert.ok(grewMiB < 200, `the client held ${grewMiB.toFixed(0)} MiB of ${sent / (1 << 20)} MiB sent`);
    } finally {
      c.close();
    }
  } finally {
    await new Promise((resolve) => flood.close(resolve));
  }
});

test('heartbeat through the guest agent: it answers after a late start', async () => {
  const sock = join(dir, 'qga.sock');
  const agent = await fakeAgent(sock, 300);
  try {
    const r = await heartbeat({ qgaSocket: sock, serialLog: join(dir, 'no-serial.log'), timeoutMs: 10_000 });
    assert.deepEqual({ name: r.name, ok: r.ok, detail: r.detail }, { name: 'heartbeat', ok: true, detail: 'guest agent answered guest-ping' });
    assert.ok(r.ms >= 250 && r.ms < 5_000, `ms ${r.ms}`);
    assert.ok(agent.requests.includes('guest-sync-delimited') && agent.requests.includes('guest-ping'), agent.requests.join(','));
  } finally {
    await agent.close();
  }
});

test('heartbeat through the real qemu-ga (listening on a unix socket of the host), started 300 ms late', async () => {
  const sock = join(dir, 'real-qga.sock');
  let agent: ChildProcess | undefined;
  const starter = setTimeout(() => {
    agent = spawn('/usr/sbin/qemu-ga', ['-m', 'unix-listen', '-p', sock, '-t', dir], { stdio: 'ignore' });
  }, 300);
  try {
    const r = await heartbeat({ qgaSocket: sock, serialLog: join(dir, 'no-serial.log'), timeoutMs: 10_000 });
    assert.equal(r.ok, true, r.detail);
    assert.equal(r.detail, 'guest agent answered guest-ping');
    assert.ok(r.ms >= 250, `ms ${r.ms}`);
  } finally {
    clearTimeout(starter);
    if (agent) await stopDaemon(agent);
  }
});

test('heartbeat through the serial console: the pattern written 300 ms later (in two pieces) is found', async () => {
  const log = join(dir, 'serial.log');
  const writer = (async () => {
    await new Promise((r) => setTimeout(r, 100));
    await writeFile(log, '\x1b[2JSeaBIOS\r\nLinux version 6.1\r\nLAB');
    await new Promise((r) => setTimeout(r, 200));
    await appendFile(log, '-UP 10.99.0.10\r\nmore\r\n');
  })();
  // No agent ever answers on this socket: the serial console wins.
  const r = await heartbeat({ qgaSocket: join(dir, 'absent-qga.sock'), serialLog: log, serialPattern: 'LAB-UP \\S+', timeoutMs: 10_000 });
  await writer;
  assert.equal(r.ok, true, r.detail);
  assert.equal(r.detail, 'serial console matched /LAB-UP \\S+/: "LAB-UP 10.99.0.10"');
  assert.ok(r.ms >= 250 && r.ms < 3_000, `ms ${r.ms}`);
});

test('heartbeat through the serial console: a match followed by 200 KiB in one burst, and one at the end of a 600 MiB log (memory stays bounded)', async () => {
  const burst = join(dir, 'burst.log');
  await writeFile(burst, `boot\r\nLAB-UP 10.99.0.10\r\n${'kernel chatter\r\n'.repeat(12_800)}`);
  const r = await heartbeat({ serialLog: burst, serialPattern: 'LAB-UP \\S+', timeoutMs: 5_000 });
  assert.equal(r.ok, true, r.detail);
  assert.equal(r.detail, 'serial console matched /LAB-UP \\S+/: "LAB-UP 10.99.0.10"');

  // A guest that floods its console: the log is read piece by piece, never whole (a 600 MiB string cannot even be made).
  const huge = join(dir, 'huge.log');
  await writeFile(huge, '');
  await truncate(huge, 600 * 1024 * 1024);
  await appendFile(huge, '\r\nLAB-UP 10.99.0.11\r\n');
  const { value: big, grewMiB } = await peakGrowth(() => heartbeat({ serialLog: huge, serialPattern: 'LAB-UP \\S+', timeoutMs: 30_000 }));
  assert.equal(big.ok, true, big.detail);
  assert.match(big.detail, /"LAB-UP 10\.99\.0\.11"$/);
  assert.ok(grewMiB < 200, `the heartbeat held ${grewMiB.toFixed(0)} MiB`);
});

test('heartbeat fails at its deadline with both reasons and the end of the serial log; a stop ends it early', async () => {
  const log = join(dir, 'panic.log');
  await writeFile(log, `${'x'.repeat(2000)}\r\n[    1.23] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n`);
  // Like QEMU's chardev with no agent in the guest: it reads and drops.
  const silent = createServer((s) => s.resume());
  const sock = join(dir, 'silent-qga.sock');
  await new Promise<void>((resolve) => silent.listen(sock, resolve));
  try {
    const r = await heartbeat({ qgaSocket: sock, serialLog: log, serialPattern: 'LAB-UP', timeoutMs: 900 });
    assert.equal(r.ok, false);
    assert.match(
      r.detail,
      /^no heartbeat within 0\.9 s; guest agent: the guest agent did not answer guest-sync-delimited within the deadline; serial console never matched \/LAB-UP\/; serial log ends: "x+ \| \[ 1\.23\] Kernel panic - not syncing: VFS: Unable to mount root fs"$/,
    );
    assert.ok(r.detail.length < 500, r.detail);
    assert.ok(r.ms >= 850 && r.ms < 3_000, `ms ${r.ms}`);

    const noSocket = await heartbeat({ qgaSocket: join(dir, 'absent.sock'), serialLog: join(dir, 'absent.log'), timeoutMs: 600 });
    assert.equal(noSocket.ok, false);
    assert.match(noSocket.detail, /guest agent: cannot reach the guest agent socket .*absent\.sock: connect ENOENT/);
    assert.match(noSocket.detail, /serial log ends: "\(serial log .*absent\.log: ENOENT\)"$/);

    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const stopped = await heartbeat({ serialLog: log, serialPattern: 'LAB-UP', timeoutMs: 30_000, signal: stop.signal });
    assert.equal(stopped.ok, false);
    assert.match(stopped.detail, /^stopped before a heartbeat; serial console never matched/);
    assert.ok(stopped.ms < 1_500, `ms ${stopped.ms}`);

    await assert.rejects(heartbeat({ serialLog: log, serialPattern: '(', timeoutMs: 100 }), /LFB_ERR_INVALID_ARGUMENT|invalid serial pattern/);
  } finally {
    await new Promise((resolve) => silent.close(resolve));
  }
});
