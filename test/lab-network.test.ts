// The lab network for real (root, no QEMU): a veth pair into a throw-away
// namespace stands in for a VM's NIC, busybox udhcpc for its DHCP client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';
import { isRunning } from './lab-harness.js';
import { createLabNetwork, removeLeftoverLabs, type LabHost } from '../src/lab/index.js';
import { isLifeboatError } from '../src/core/errors.js';

const SUBNET = '10.99.0.0/24';
const GATEWAY = '10.99.0.1';
const WEB: LabHost = { name: 'web', mac: '52:54:00:12:34:56', ip: '10.99.0.23' };
const DB: LabHost = { name: 'db', mac: '52:54:00:12:34:57', ip: '10.99.0.24' };
const NETWORK_JS = fileURLToPath(new URL('../src/lab/network.js', import.meta.url));

const newId = (): string => randomBytes(3).toString('hex');

function run(file: string, args: readonly string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(file: string, ...args: string[]): Promise<string> {
  const r = await run(file, args);
  assert.equal(r.code, 0, `${file} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const netnsNames = async (): Promise<string[]> => (await ok('ip', 'netns', 'list')).split('\n').map((l) => l.split(' ')[0] ?? '');
const hostLinks = async (): Promise<string[]> => [...(await ok('ip', '-o', 'link', 'show')).matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]!);

/** Removes a namespace the test made, with whatever still runs in it. */
async function dropNetns(ns: string): Promise<void> {
  const pids = (await run('ip', ['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean);
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone
    }
  }
  await run('ip', ['netns', 'delete', ns]);
}

/** A TCP listener that counts the connections it sees. */
async function countingListener(host: string): Promise<{ server: Server; port: number; seen: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, port: (server.address() as { port: number }).port, seen: () => n };
}

/** A TCP listener inside a namespace (a node child), printing one line per connection. */
async function listenerInNetns(ns: string, host: string): Promise<{ child: ChildProcess; port: number; seen: () => number }> {
  const script = `const s=require('net').createServer(c=>{console.log('conn');c.destroy()});s.listen(0,${JSON.stringify(host)},()=>console.log('port '+s.address().port))`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener in ${ns} did not start: ${out}`)), 10_000);
    child.stdout!.on('data', () => {
      const m = /port (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  return { child, port, seen: () => out.split('\n').filter((l) => l === 'conn').length };
}

/** A node one-liner that connects and prints "connected" or the error code (or "timeout"). */
const connectScript = (host: string, port: number): string[] => [
  '-e',
  `const s=require('net').connect(${port},${JSON.stringify(host)});const t=setTimeout(()=>{console.log('timeout');process.exit(0)},2000);` +
    `s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`,
];

test('a lab hands out the planned address, answers ping and DNS, reaches nothing outside, and destroy removes it all', async () => {
  const id = newId();
  const client = `lfbtest-${id}-c`;
  const outside = `lfbtest-${id}-o`;
  // A /24 of its own per run: two runs at once must not share the host's route to it.
  const [a, b] = randomBytes(2);
  const out24 = `10.${200 + (a! % 50)}.${b!}`;
  const { dir, cleanup } = await tempDir('lfb-lab-net-');
  const hostListener = await countingListener('127.0.0.1');
  let outsideListener: Awaited<ReturnType<typeof listenerInNetns>> | undefined;
  const lab = await createLabNetwork({ id, subnet: SUBNET, hosts: [WEB, DB], stateDir: dir });
  try {
    assert.equal(lab.netns, `lfb-lab-${id}`);
    assert.equal(lab.gateway, GATEWAY);
    const rec = JSON.parse(await readFile(join(dir, `lab-${id}.json`), 'utf8')) as { owner: { pid: number }; netns: string; dnsmasq: { pid: number } };
    assert.equal(rec.owner.pid, process.pid);
    assert.equal(rec.netns, lab.netns);
    const dnsmasqPid = rec.dnsmasq.pid;
    assert.match(readFileSync(`/proc/${dnsmasqPid}/cmdline`, 'utf8'), /dnsmasq/);

    // Inside: loopback and the bridge only, no route but the lab's own /24, forwarding off.
    const links = await lab.exec('ip', ['-o', 'link', 'show']);
    assert.deepEqual([...links.stdout.matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]).sort(), ['lfbbr0', 'lo']);
    const routes = await lab.exec('ip', ['-4', 'route', 'show']);
    assert.equal(routes.stdout.trim(), `10.99.0.0/24 dev lfbbr0 proto kernel scope link src ${GATEWAY}`);
    assert.equal((await lab.exec('cat', ['/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '0');

    // A tap for QEMU: made in the host, then moved onto the bridge.
    const tap = await lab.createTap(0);
    assert.equal(tap, `lfb${id}t0`);
    assert.ok((await hostLinks()).includes(tap));
    await lab.attachTap(tap);
    assert.ok(!(await hostLinks()).includes(tap));
    assert.match((await lab.exec('ip', ['-o', 'link', 'show', 'dev', tap])).stdout, /master lfbbr0/);

    // The stand-in VM: a veth whose far end (with web's MAC) is in the client namespace.
    await ok('ip', 'netns', 'add', client);
    const veth = `lfb${id}t1`;
    await ok('ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client);
    await ok('ip', '-n', client, 'link', 'set', 'eth0', 'address', WEB.mac, 'up');
    await lab.attachTap(veth);
    const script = join(dir, 'udhcpc.sh');
    await writeFile(
      script,
      '#!/bin/sh\ncase "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "$ip router=$router dns=$dns domain=$domain" > "$0.lease";; esac\n',
    );
    await chmod(script, 0o755);
    const dhcp = await run('ip', ['netns', 'exec', client, 'busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', script]);
    assert.equal(dhcp.code, 0, dhcp.stderr);
    // The planned address, the lab's DNS, and no router: the VM gets no default route to try.
    assert.equal((await readFile(`${script}.lease`, 'utf8')).trim(), `${WEB.ip} router= dns=${GATEWAY} domain=lab`);

    const ping = await lab.exec('ping', ['-c', '1', '-W', '2', WEB.ip], { timeoutMs: 10_000 });
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);

    for (const [name, ip] of [
      ['web', WEB.ip],
      ['web.lab', WEB.ip],
      ['db', DB.ip],
    ] as const) {
      const r = await lab.exec('busybox', ['nslookup', name, GATEWAY], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Address: ${ip.replace(/\./g, '\\.')}`), name);
    }
    // From the VM's side too, and nothing outside the lab is resolved (no upstream).
    assert.match(await ok('ip', 'netns', 'exec', client, 'busybox', 'nslookup', 'db', GATEWAY), /Address: 10\.99\.0\.24/);
    const outsideName = await lab.exec('busybox', ['nslookup', 'example.com', GATEWAY], { timeoutMs: 10_000 });
    assert.notEqual(outsideName.code, 0, outsideName.stdout);
    // A program run in the lab without naming a server (a test script, node) resolves the VMs' names through the system's resolver.
    assert.equal(readFileSync(`/etc/netns/${lab.netns}/resolv.conf`, 'utf8'), `nameserver ${GATEWAY}\nsearch lab\n`);
    const getent = await lab.exec('getent', ['hosts', 'db'], { timeoutMs: 10_000 });
    assert.equal(getent.code, 0, getent.stderr);
    assert.match(getent.stdout, /^10\.99\.0\.24\s+db/);
    const lookup = await lab.exec(process.execPath, ['-e', "require('dns').lookup('web.lab',(e,a)=>console.log(e?e.code:a))"], { timeoutMs: 10_000 });
    assert.equal(lookup.stdout.trim(), WEB.ip, lookup.stderr);

    // Isolation: a listener on the host's loopback and one in another namespace the host reaches.
    await ok('ip', 'netns', 'add', outside);
    await ok('ip', 'link', 'add', `lfbtest${id}o`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside);
    await ok('ip', 'addr', 'add', `${out24}.1/24`, 'dev', `lfbtest${id}o`);
    await ok('ip', 'link', 'set', `lfbtest${id}o`, 'up');
    await ok('ip', '-n', outside, 'addr', 'add', `${out24}.2/24`, 'dev', 'eth0');
    await ok('ip', '-n', outside, 'link', 'set', 'eth0', 'up');
    outsideListener = await listenerInNetns(outside, `${out24}.2`);
    // Both listeners answer a connection from the host: their zero counts below mean the lab's attempts never arrived.
    assert.equal((await run(process.execPath, connectScript('127.0.0.1', hostListener.port))).stdout.trim(), 'connected');
    assert.equal((await run(process.execPath, connectScript(`${out24}.2`, outsideListener.port))).stdout.trim(), 'connected');
    await new Promise((r) => setTimeout(r, 200));
    const hostBefore = hostListener.seen();
    const outsideBefore = outsideListener.seen();
    assert.equal(hostBefore, 1);
    assert.equal(outsideBefore, 1);
    for (const [ns, host, port] of [
      [lab.netns, '127.0.0.1', hostListener.port],
      [lab.netns, `${out24}.2`, outsideListener.port],
      [client, '127.0.0.1', hostListener.port],
      [client, `${out24}.2`, outsideListener.port],
    ] as const) {
      const r = await run('ip', ['netns', 'exec', ns, process.execPath, ...connectScript(host, port)]);
      assert.notEqual(r.stdout.trim(), 'connected', `${ns} → ${host}:${port}`);
      assert.match(r.stdout.trim(), /^(ENETUNREACH|ECONNREFUSED|EHOSTUNREACH|timeout)$/, `${ns} → ${host}:${port}: ${r.stdout}${r.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(hostListener.seen(), hostBefore, 'a connection from the lab reached the host');
    assert.equal(outsideListener.seen(), outsideBefore, 'a connection from the lab reached another namespace');

    // exec: a nonzero exit is returned, a program past its deadline is killed.
    assert.equal((await lab.exec('sh', ['-c', 'exit 3'])).code, 3);
    const t0 = performance.now();
    const slow = await lab.exec('sh', ['-c', 'sleep 30; echo late'], { timeoutMs: 300 });
    assert.ok(performance.now() - t0 < 3000, 'killed at its deadline');
    assert.notEqual(slow.code, 0);
    assert.doesNotMatch(slow.stdout, /late/);
    const env = await lab.exec('sh', ['-c', 'echo "$VM_NAME"'], { env: { VM_NAME: 'web' } });
    assert.equal(env.stdout.trim(), 'web');

    await lab.destroy();
    assert.ok(!(await netnsNames()).includes(lab.netns), 'namespace removed');
    assert.deepEqual(
      (await hostLinks()).filter((l) => l.startsWith(`lfb${id}`)),
      [],
      'no tap left in the host',
    );
    assert.ok(!isRunning(dnsmasqPid), 'dnsmasq ended');
    assert.ok(!existsSync(join(dir, `lab-${id}.json`)), 'record removed');
    assert.ok(!existsSync(`/etc/netns/${lab.netns}`), "the namespace's resolv.conf removed");
    await lab.destroy();
  } finally {
    await lab.destroy().catch(() => undefined);
    outsideListener?.child.kill('SIGKILL');
    hostListener.server.close();
    await dropNetns(client);
    await dropNetns(outside);
    await run('ip', ['link', 'delete', `lfbtest${id}o`]);
    await cleanup();
  }
});

test('a lab whose owner was killed is removed by removeLeftoverLabs, a live one is left alone', async () => {
  const dead = newId();
  const orphan = newId();
  const live = newId();
  const { dir, cleanup } = await tempDir('lfb-lab-left-');
  const orphanNs = `lfb-lab-${orphan}`;
  let liveLab: Awaited<ReturnType<typeof createLabNetwork>> | undefined;
  let owner: ChildProcess | undefined;
  let sleeper: ChildProcess | undefined;
  try {
    // The owner: makes a lab with a tap left in the host and one on the bridge, records a session, then is killed.
    const script = `
      import { createLabNetwork, recordLabSession } from ${JSON.stringify(NETWORK_JS)};
      const lab = await createLabNetwork({ id: ${JSON.stringify(dead)}, subnet: '10.99.0.0/24', hosts: ${JSON.stringify([WEB])}, stateDir: ${JSON.stringify(dir)} });
      await lab.createTap(0);
      await lab.attachTap(await lab.createTap(1));
      await recordLabSession(${JSON.stringify(dir)}, lab.id, 'sb-${dead}-0');
      console.log('ready');
      setInterval(() => {}, 1000);`;
    owner = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    owner.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    owner.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<void>((r) => owner!.once('exit', () => r()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the owner did not make its lab: ${err}`)), 20_000);
      owner!.stdout!.on('data', () => out.includes('ready') && (clearTimeout(timer), resolve()));
      owner!.once('exit', (code) => (clearTimeout(timer), reject(new Error(`the owner ended (${code}): ${err}`))));
    });
    owner.kill('SIGKILL');
    await exited;
    const rec = JSON.parse(await readFile(join(dir, `lab-${dead}.json`), 'utf8')) as { dnsmasq: { pid: number }; taps: string[]; sessions: string[] };
    assert.deepEqual(rec.taps, [`lfb${dead}t0`, `lfb${dead}t1`]);
    assert.deepEqual(rec.sessions, [`sb-${dead}-0`]);
    assert.ok((await netnsNames()).includes(`lfb-lab-${dead}`), 'the kill left the namespace');
    assert.ok((await hostLinks()).includes(`lfb${dead}t0`), 'the kill left the host tap');
    assert.ok(isRunning(rec.dnsmasq.pid), 'the kill left dnsmasq');
    assert.ok(existsSync(`/etc/netns/lfb-lab-${dead}/resolv.conf`), "the kill left the namespace's resolv.conf");

    // A namespace with no record and no owner mark, with a process still inside.
    await ok('ip', 'netns', 'add', orphanNs);
    sleeper = spawn('ip', ['netns', 'exec', orphanNs, 'sleep', '60'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(sleeper.pid !== undefined && isRunning(sleeper.pid));

    liveLab = await createLabNetwork({ id: live, subnet: SUBNET, hosts: [DB], stateDir: dir });

    const stopped: string[] = [];
    const result = await removeLeftoverLabs(dir, {
      stopSession: async (name) => {
        stopped.push(name);
      },
    });
    assert.deepEqual(result.errors, []);
    // A lab user running at the same time (another test file) may remove the unrecorded namespace first, and this call
    // removes what such a user's killed labs left: so "includes", and the namespaces must be gone either way.
    assert.ok(result.removed.includes(`lfb-lab-${dead}`), result.removed.join(' '));
    assert.ok(!result.removed.includes(liveLab.netns));
    assert.deepEqual(stopped, [`sb-${dead}-0`]);
    const names = await netnsNames();
    assert.ok(!names.includes(`lfb-lab-${dead}`), 'namespace removed');
    assert.ok(!names.includes(orphanNs), 'unrecorded namespace removed');
    assert.deepEqual(
      (await hostLinks()).filter((l) => l.startsWith(`lfb${dead}`)),
      [],
      'taps removed',
    );
    assert.ok(!isRunning(rec.dnsmasq.pid), 'dnsmasq killed');
    assert.ok(!isRunning(sleeper.pid), 'the process in the unrecorded namespace killed');
    assert.ok(!existsSync(join(dir, `lab-${dead}.json`)), 'record removed');
    assert.ok(!existsSync(`/etc/netns/lfb-lab-${dead}`), 'its resolv.conf removed');
    assert.ok(names.includes(liveLab.netns), 'the live lab stays');
    assert.ok(existsSync(`/etc/netns/${liveLab.netns}/resolv.conf`), "the live lab's resolv.conf stays");
    assert.ok(existsSync(join(dir, `lab-${live}.json`)));
    const again = await removeLeftoverLabs(dir);
    assert.deepEqual(again.errors, []);
    assert.ok(!again.removed.includes(liveLab.netns) && !again.removed.includes(`lfb-lab-${dead}`), again.removed.join(' '));
  } finally {
    owner?.kill('SIGKILL');
    sleeper?.kill('SIGKILL');
    await liveLab?.destroy().catch(() => undefined);
    await removeLeftoverLabs(dir).catch(() => undefined);
    await dropNetns(orphanNs);
    await cleanup();
  }
});

test('two labs made at once with one id (two state folders, or one): one is refused, and its failure leaves the other whole', async () => {
  const a = await tempDir('lfb-lab-race-a-');
  const b = await tempDir('lfb-lab-race-b-');
  try {
    for (const dirs of [
      [a.dir, b.dir],
      [a.dir, a.dir],
    ]) {
      const id = newId();
      const made: Awaited<ReturnType<typeof createLabNetwork>>[] = [];
      try {
        const results = await Promise.allSettled(
          dirs.map(async (stateDir) => {
            const lab = await createLabNetwork({ id, subnet: SUBNET, hosts: [WEB], stateDir });
            made.push(lab);
          }),
        );
        const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
        assert.equal(made.length, 1, refused.map(String).join('\n'));
        assert.ok(isLifeboatError(refused[0], 'LFB_ERR_LAB'), String(refused[0]));
        // The lab that was made still has its namespace, dnsmasq, resolver file and record.
        const lab = made[0]!;
        assert.ok((await netnsNames()).includes(lab.netns), 'the namespace of the lab that was made');
        const r = await lab.exec('busybox', ['nslookup', 'web', GATEWAY], { timeoutMs: 10_000 });
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
        assert.ok(existsSync(`/etc/netns/${lab.netns}/resolv.conf`));
        assert.ok(
          dirs.some((d) => existsSync(join(d, `lab-${id}.json`))),
          'its record',
        );
      } finally {
        for (const lab of made) await lab.destroy().catch(() => undefined);
        await dropNetns(`lfb-lab-${id}`);
      }
    }
  } finally {
    await a.cleanup();
    await b.cleanup();
  }
});

test('lab errors: a missing tool, not root, a failing ip step and a bad plan say what and why', async () => {
  const { dir, cleanup } = await tempDir('lfb-lab-err-');
  const savedPath = process.env['PATH'];
  try {
    const opts = { id: newId(), subnet: SUBNET, hosts: [WEB], stateDir: dir };
    const empty = join(dir, 'empty');
    const onlyIp = join(dir, 'only-ip');
    await mkdir(empty);
    await mkdir(onlyIp);
    await symlink((await ok('sh', '-c', 'command -v ip')).trim(), join(onlyIp, 'ip'));
    process.env['PATH'] = empty;
    await assert.rejects(createLabNetwork(opts), (e: unknown) => isLifeboatError(e, 'LFB_ERR_TOOL_MISSING') && /needs ip.*iproute2/.test(e.message));
    process.env['PATH'] = onlyIp;
    await assert.rejects(createLabNetwork(opts), (e: unknown) => isLifeboatError(e, 'LFB_ERR_TOOL_MISSING') && /needs dnsmasq.*dnsmasq-base/.test(e.message));
    process.env['PATH'] = savedPath;
    assert.ok(!(await netnsNames()).includes(`lfb-lab-${opts.id}`));

    // Not root: a child running as nobody.
    const script = `import(${JSON.stringify(NETWORK_JS)}).then(m => m.createLabNetwork(${JSON.stringify({ ...opts, stateDir: '/tmp' })})).catch(e => { console.log(e.code + ' ' + e.message); })`;
    const nobody = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script]);
    assert.match(nobody.stdout, /^LFB_ERR_LAB .*needs root/, nobody.stderr);

    await assert.rejects(createLabNetwork({ ...opts, hosts: [WEB, { ...DB, ip: WEB.ip }] }), (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'));
    await assert.rejects(createLabNetwork({ ...opts, subnet: '10.99.0.0/16' }), (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'));

    // dnsmasq refuses to start (its log file cannot be opened): its words are in the error, and nothing is left.
    const broken = { ...opts, id: newId() };
    await mkdir(join(dir, `lab-${broken.id}.dnsmasq.log`));
    await assert.rejects(
      createLabNetwork(broken),
      (e: unknown) =>
        isLifeboatError(e, 'LFB_ERR_LAB') && /starting dnsmasq in lfb-lab-\w+: `ip netns exec .*dnsmasq .*` ended \(exit \d+\): .*log/is.test(e.message),
    );
    assert.ok(!(await netnsNames()).includes(`lfb-lab-${broken.id}`));
    assert.ok(!existsSync(join(dir, `lab-${broken.id}.json`)));

    // A dnsmasq that listens and then ends before it logs its start, as one that cannot open its log file does after
    // binding its sockets (the case above, where the order was a race): the lab is not made.
    const dying = { ...opts, id: newId() };
    const fakeDir = join(dir, 'dying-dnsmasq');
    await mkdir(fakeDir);
    await symlink(join(onlyIp, 'ip'), join(fakeDir, 'ip'));
    const fake = [
      `#!${process.execPath}`,
      "const dgram = require('node:dgram'), net = require('node:net');",
      `dgram.createSocket('udp4').bind(53, ${JSON.stringify(GATEWAY)});`,
      `net.createServer().listen(53, ${JSON.stringify(GATEWAY)});`,
      "dgram.createSocket('udp4').bind(67, '0.0.0.0');",
      'setTimeout(() => process.exit(5), 1500);',
    ].join('\n');
    await writeFile(join(fakeDir, 'dnsmasq'), fake, { mode: 0o755 });
    process.env['PATH'] = fakeDir;
    await assert.rejects(createLabNetwork(dying), (e: unknown) => isLifeboatError(e, 'LFB_ERR_LAB') && /dnsmasq .*ended \(exit 5\)/s.test(e.message));
    process.env['PATH'] = savedPath;
    assert.ok(!(await netnsNames()).includes(`lfb-lab-${dying.id}`));
    assert.ok(!existsSync(join(dir, `lab-${dying.id}.json`)));

    // One that listens and never logs its start: refused when the start times out, saying it listened.
    const silent = { ...opts, id: newId() };
    await writeFile(join(fakeDir, 'dnsmasq'), fake.replace('process.exit(5), 1500', 'process.exit(0), 60_000'), { mode: 0o755 });
    process.env['PATH'] = fakeDir;
    await assert.rejects(
      createLabNetwork(silent),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_LAB') && /dnsmasq .*listened on .*:53 and :67 but did not log its start in .* within \d+ ms/s.test(e.message),
    );
    process.env['PATH'] = savedPath;
    assert.ok(!(await netnsNames()).includes(`lfb-lab-${silent.id}`));

    const lab = await createLabNetwork(opts);
    try {
      await assert.rejects(
        lab.attachTap('lfbnosuch0'),
        (e: unknown) => isLifeboatError(e, 'LFB_ERR_LAB') && /`ip link set dev lfbnosuch0 netns lfb-lab-\w+`.*Cannot find device/.test(e.message),
      );
      // A second lab with the same id is refused while the first lives.
      await assert.rejects(createLabNetwork(opts), (e: unknown) => isLifeboatError(e, 'LFB_ERR_LAB') && /exists/.test(e.message));
    } finally {
      await lab.destroy();
    }
    assert.ok(!(await netnsNames()).includes(lab.netns));
  } finally {
    process.env['PATH'] = savedPath;
    await cleanup();
  }
});
