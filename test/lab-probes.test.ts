// The tests of a lab VM (src/lab/probes.ts, screenshot.ts) against real tools: a throw-away network namespace with
// an address only it has, busybox httpd and a TCP listener inside it; and a real QEMU (TCG, no disk: SeaBIOS's
// screen) for the screenshot and a guest-agent channel with no agent behind it. The heartbeat's own cases are in
// lab-heartbeat.test.ts. Every check both ways, the failing ones on short deadlines.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { deflateSync, inflateSync } from 'node:zlib';
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
