// The tests of a lab VM (src/lab/probes.ts, guest-agent.ts, screenshot.ts) against real tools: a throw-away
// network namespace with an address only it has, busybox httpd and a TCP listener inside it; a fake guest agent
// speaking the agent's protocol on a unix socket; a serial log written while the heartbeat waits; and a real QEMU
// (TCG, no disk: SeaBIOS's screen) for the screenshot. Every check both ways, the failing ones on short deadlines.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { deflateSync, inflateSync } from 'node:zlib';
import { GuestAgentClient } from '../src/lab/guest-agent.js';
import { heartbeat, httpProbe, pingProbe, scriptProbe, tcpProbe, type LabExec } from '../src/lab/probes.js';
import { pngSize, screenshot } from '../src/lab/screenshot.js';
import { tempDir, until } from './helpers.js';

const NS = `lfbprobe-${process.pid}`;
const SUBNET = `10.98.${process.pid % 250}`;
const ADDR = `${SUBNET}.1`;
/** An address of the namespace's subnet that nobody has: pings go unanswered. */
const NOBODY = `${SUBNET}.77`;

const sh = (args: string[]): string => execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 10_000 });

/** LabNetwork.exec's shape over `ip netns exec`: the process group is killed at the deadline (a script's children too). */
function nsExec(ns: string): LabExec {
  return (file, args, opts) =>
    new Promise((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', ns, file, ...args], { env: { ...process.env, ...opts?.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = opts?.timeoutMs === undefined ? undefined : setTimeout(() => process.kill(-p.pid!, 'SIGKILL'), opts.timeoutMs);
      p.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      p.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
}
const exec = nsExec(NS);

let dir: string;
let cleanupDir: () => Promise<void>;
const daemons: ChildProcess[] = [];
let tcpPort: number;

function stopDaemon(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

before(async () => {
  ({ dir, cleanupDir } = await tempDir('lifeboat-lab-probes-').then((t) => ({ dir: t.dir, cleanupDir: t.cleanup })));
  sh(['ip', 'netns', 'add', NS]);
  sh(['ip', '-n', NS, 'link', 'set', 'lo', 'up']);
  // A veth pair with both ends inside: an address and a /24 route that exist only in the namespace; the other
  // end answers no ARP for other addresses, so pings to them go unanswered.
  sh(['ip', '-n', NS, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
  sh(['ip', '-n', NS, 'addr', 'add', `${ADDR}/24`, 'dev', 'd0']);
  sh(['ip', '-n', NS, 'link', 'set', 'd1', 'up']);
  sh(['ip', '-n', NS, 'link', 'set', 'd0', 'up']);
  const www = join(dir, 'www');
  await mkdir(www);
  await writeFile(join(www, 'index.html'), 'hello from the lab\n');
  // Port 80 of a namespace made for this file: nothing else can hold it.
  daemons.push(spawn('ip', ['netns', 'exec', NS, '/bin/busybox', 'httpd', '-f', '-p', `${ADDR}:80`, '-h', www], { stdio: 'ignore' }));
  const listener = spawn(
    'ip',
    ['netns', 'exec', NS, process.execPath, '-e', `const s=require('net').createServer(c=>c.end()).listen(0,'${ADDR}',()=>console.log(s.address().port))`],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  daemons.push(listener);
  tcpPort = await new Promise<number>((resolve, reject) => {
    listener.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    listener.once('exit', (code) => reject(new Error(`the TCP listener in ${NS} exited ${code}`)));
  });
});

after(async () => {
  await Promise.all(daemons.map(stopDaemon));
  try {
    sh(['ip', 'netns', 'del', NS]);
  } finally {
    await cleanupDir();
  }
});

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

test('ping from inside the lab: an address of the namespace answers; one nobody has fails at the deadline naming it', async () => {
  const ok = await pingProbe(exec, ADDR, 5_000);
  assert.equal(ok.name, 'ping');
  assert.equal(ok.ok, true, ok.detail);
  assert.match(ok.detail, new RegExp(`^reply from ${ADDR.replaceAll('.', '\\.')} in [\\d.]+ ?ms`));

  const bad = await pingProbe(exec, NOBODY, 1_500);
  assert.equal(bad.ok, false);
  assert.match(bad.detail, new RegExp(`no reply from ${NOBODY.replaceAll('.', '\\.')} within 1\\.5 s \\([12] attempts\\)`));
  assert.ok(bad.ms >= 1_400 && bad.ms < 4_000, `ms ${bad.ms}`);
});

test('tcp from inside the lab: the listener connects; a closed port fails fast with the reason', async () => {
  const ok = await tcpProbe(exec, ADDR, tcpPort, 5_000);
  assert.equal(ok.name, `tcp:${tcpPort}`);
  assert.equal(ok.ok, true, ok.detail);
  assert.match(ok.detail, /^connected to /);

  const bad = await tcpProbe(exec, ADDR, 9, 800);
  assert.equal(bad.name, 'tcp:9');
  assert.equal(bad.ok, false);
  assert.match(bad.detail, new RegExp(`^${ADDR.replaceAll('.', '\\.')}:9: ECONNREFUSED \\(\\d+ attempts in \\d+ ms\\)$`));
  assert.ok(bad.ms < 4_000, `ms ${bad.ms}`);
});

test('http from inside the lab: status and first bytes in the detail; a 404 fails, or passes when expected', async () => {
  const url = `http://${ADDR}/`;
  const ok = await httpProbe(exec, url, 5_000);
  assert.equal(ok.name, `http:${url}`);
  assert.equal(ok.ok, true, ok.detail);
  assert.match(ok.detail, /^HTTP 200 OK: "hello from the lab"$/);

  const missing = `http://${ADDR}/missing`;
  const bad = await httpProbe(exec, missing, 3_000);
  assert.equal(bad.ok, false);
  assert.match(bad.detail, /^HTTP 404 Not Found.*\(expected 200\.\.399\)$/);
  assert.ok(bad.ms < 2_500, `a wrong status is final, not retried: ${bad.ms} ms`);

  const expected404 = await httpProbe(exec, missing, 3_000, 404);
  assert.equal(expected404.ok, true, expected404.detail);

  const refused = await httpProbe(exec, `http://${ADDR}:9/`, 700);
  assert.equal(refused.ok, false);
  assert.match(refused.detail, /^ECONNREFUSED \(expected 200\.\.399\)$/);
});

test('script inside the lab: exit 0 passes with its output; a nonzero exit or a hang fails with the last lines', async () => {
  const good = join(dir, 'good.sh');
  await writeFile(good, `#!/bin/sh\necho "name=$VM_NAME ip=$VM_IP point=$POINT_ID"\nip -o -4 addr show d0 | grep -q '${ADDR}/24' && echo inside\n`);
  const failing = join(dir, 'failing.sh');
  await writeFile(failing, '#!/bin/sh\nfor i in 1 2 3 4 5 6 7; do echo "line $i"; done\necho "database is down" >&2\nexit 3\n');
  const hanging = join(dir, 'hanging.sh');
  await writeFile(hanging, '#!/bin/sh\necho starting\nsleep 30\n');
  await Promise.all([good, failing, hanging].map((f) => chmod(f, 0o755)));
  const env = { VM_NAME: 'web', VM_IP: '10.99.0.10', POINT_ID: 'p-123' };

  const ok = await scriptProbe(exec, good, env, 5_000);
  assert.equal(ok.name, `script:${good}`);
  assert.equal(ok.ok, true, ok.detail);
  assert.equal(ok.detail, 'name=web ip=10.99.0.10 point=p-123 | inside');

  const bad = await scriptProbe(exec, failing, env, 5_000);
  assert.equal(bad.ok, false);
  assert.equal(bad.detail, 'exit 3: line 4 | line 5 | line 6 | line 7 | database is down');

  const hung = await scriptProbe(exec, hanging, env, 600);
  assert.equal(hung.ok, false);
  assert.equal(hung.detail, 'did not finish within 0.6 s: starting');
  assert.ok(hung.ms < 3_000, `ms ${hung.ms}`);

  const missing = await scriptProbe(exec, join(dir, 'nope.sh'), env, 2_000);
  assert.equal(missing.ok, false);
  assert.match(missing.detail, /nope\.sh/);
});

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

/** Decodes an 8-bit RGB or RGBA PNG far enough to tell whether every pixel has the same colour. */
function distinctColours(png: Buffer, max = 3): number {
  const size = pngSize(png)!;
  const colourType = png[25]!;
  assert.equal(png[24], 8, 'bit depth 8');
  assert.ok(colourType === 2 || colourType === 6, `colour type ${colourType}`);
  const bpp = colourType === 2 ? 3 : 4;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    if (png.toString('latin1', at + 4, at + 8) === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = size.width * bpp;
  let prev = Buffer.alloc(stride);
  const colours = new Set<string>();
  for (let y = 0; y < size.height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? line[i - bpp]! : 0;
      const b = prev[i]!;
      const c = i >= bpp ? prev[i - bpp]! : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a);
      const pb = Math.abs(p - b);
      const pc = Math.abs(p - c);
      const add = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter]!;
      line[i] = (line[i]! + add) & 0xff;
    }
    for (let x = 0; x < size.width && colours.size < max; x++) colours.add(line.subarray(x * bpp, x * bpp + bpp).toString('hex'));
    prev = line;
  }
  return colours.size;
}

/** A tiny PNG of one colour (unfiltered RGB), to show the colour check can say "one colour". */
function uniformPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    // The CRC is not checked by distinctColours or pngSize.
    return Buffer.concat([len, Buffer.from(type, 'latin1'), data, Buffer.alloc(4)]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc(height * (1 + width * 3), 0x20);
  for (let y = 0; y < height; y++) rows[y * (1 + width * 3)] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('the PNG checks: size from the header, one colour told apart', () => {
  const png = uniformPng(5, 3);
  assert.deepEqual(pngSize(png), { width: 5, height: 3 });
  assert.equal(distinctColours(png), 1);
  assert.equal(pngSize(Buffer.from('P6\n720 400\n255\n'.padEnd(32))), undefined);
});

test("a real QEMU (TCG, SeaBIOS's screen): a PNG of the VGA text screen, not one colour; no agent on its channel fails the heartbeat; a dead monitor fails", async () => {
  const qmpSock = join(dir, 'vm-qmp.sock');
  const qgaSock = join(dir, 'vm-qga.sock');
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      ...['-accel', 'tcg', '-m', '64', '-nodefaults', '-vga', 'std', '-display', 'none', '-no-reboot', '-qmp', `unix:${qmpSock},server=on,wait=off`],
      // The guest-agent channel of a booted lab VM, with no agent behind it (no guest OS).
      ...['-chardev', `socket,id=lfb-qga,path=${qgaSock},server=on,wait=off`, '-device', 'virtio-serial-pci'],
      ...['-device', 'virtserialport,chardev=lfb-qga,name=org.qemu.guest_agent.0'],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  qemu.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await until(
      'QEMU to open its QMP socket',
      async () => {
        if (qemu.exitCode !== null) assert.fail(`QEMU exited ${qemu.exitCode}: ${stderr}`);
        return existsSync(qmpSock) || undefined;
      },
      10_000,
    );
    const png = join(dir, 'screen.png');
    // SeaBIOS draws its text within a second or two of TCG; until then the screen is one colour.
    const shot = await until(
      'a screenshot showing text',
      async () => {
        const r = await screenshot(qmpSock, png, 5_000);
        assert.equal(r.ok, true, r.detail);
        return distinctColours(await readFile(png)) > 1 ? r : undefined;
      },
      15_000,
      300,
    );
    assert.equal(shot.name, 'screenshot');
    assert.equal(shot.detail, png);
    const bytes = await readFile(png);
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const size = pngSize(bytes)!;
    assert.ok(['720x400', '640x480'].includes(`${size.width}x${size.height}`), `${size.width}x${size.height}`);
    assert.deepEqual({ width: shot.width, height: shot.height }, size);

    // QEMU's chardev accepts the connection but nobody answers: the heartbeat fails at its deadline saying so.
    const hb = await heartbeat({ qgaSocket: qgaSock, serialLog: join(dir, 'vm-serial.log'), timeoutMs: 1_200 });
    assert.equal(hb.ok, false);
    assert.match(hb.detail, /^no heartbeat within 1\.2 s; guest agent: the guest agent did not answer guest-sync-delimited within the deadline; /);
  } finally {
    await stopDaemon(qemu);
  }
  const dead = await screenshot(qmpSock, join(dir, 'dead.png'), 1_000);
  assert.equal(dead.ok, false);
  assert.match(dead.detail, /^no screenshot: cannot reach the QEMU monitor .*vm-qmp\.sock: connect (ECONNREFUSED|ENOENT)/);
});
