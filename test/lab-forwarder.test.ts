// Port forwards into a lab for real (root, no QEMU): a throw-away namespace
// (H1's withNetns) with a TCP echo server on its bridge address stands in for a
// lab VM; the forward's host side listens on the host's loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chmod, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir, until } from './helpers.js';
import { isRunning, withNetns } from './lab-harness.js';
import { checkForwardHost, isLoopbackHost, parseForward, removeStaleForwardSockets, startLabForward, type LabForward } from '../src/lab/forwarder.js';
import { isLifeboatError } from '../src/core/errors.js';

const MiB = 1024 * 1024;
/** Pids of the relays running now (from /proc: no procps needed). */
async function relayPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || !isRunning(Number(p))) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('netns-relay.js')) pids.push(Number(p));
  }
  return pids;
}
const FORWARDER_JS = fileURLToPath(new URL('../src/lab/forwarder.js', import.meta.url));
const ECHO = `const s=require('net').createServer({allowHalfOpen:true},c=>{c.on('error',()=>{});c.pipe(c)});s.listen(0,process.argv[1],()=>process.stdout.write('P'+s.address().port+'\\n'));process.stdin.on('end',()=>process.exit(0)).resume();`;

const rssMiB = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** An echo server (half-close aware) inside `netns` on `host`, port 0. */
async function echoIn(netns: string, host: string): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', ECHO, host], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await until(`the echo server in ${netns} (${err})`, async () => Number(/^P(\d+)$/m.exec(out)?.[1]) || undefined, 10_000);
  return { port, child };
}

/** Sends `data`, half-closes, and resolves with everything received until the other side closed. */
function echoThrough(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('end', () => {
      s.end();
      resolve(Buffer.concat(chunks));
    });
    s.end(data);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Runs `fn` with a namespace, an echo server on its bridge and a forward to it; all removed in every outcome. */
async function withForward(fn: (o: { netns: string; fwd: LabForward; echoPort: number }) => Promise<void>, maxConnections?: number): Promise<void> {
  const { dir, cleanup } = await tempDir('lifeboat-fwd-');
  try {
    await withNetns([], async ({ netns, gateway }) => {
      const echo = await echoIn(netns, gateway);
      let fwd: LabForward | undefined;
      try {
        fwd = await startLabForward({
          netns,
          socketDir: dir,
          listenHost: '127.0.0.1',
          listenPort: 0,
          targetIp: gateway,
          targetPort: echo.port,
          ...(maxConnections !== undefined ? { maxConnections } : {}),
        });
        await fn({ netns, fwd, echoPort: echo.port });
      } finally {
        await fwd?.close();
        echo.child.kill('SIGKILL');
      }
    });
  } finally {
    await cleanup();
  }
}

test('parseForward and the loopback rule', () => {
  assert.deepEqual(parseForward('127.0.0.1:15432=db:5432'), { host: '127.0.0.1', port: 15432, job: 'db', toPort: 5432 });
  assert.deepEqual(parseForward('8080=web-1:80'), { host: '127.0.0.1', port: 8080, job: 'web-1', toPort: 80 });
  assert.deepEqual(parseForward('[::1]:0=web:80'), { host: '::1', port: 0, job: 'web', toPort: 80 });
  for (const bad of ['db:5432', '127.0.0.1:15432=db', '1:70000=db:1', 'x:1=db:0', '=db:1'])
    assert.throws(
      () => parseForward(bad),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'),
      bad,
    );
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.5', 'example.org']) assert.equal(isLoopbackHost(h), false, h);
  assert.throws(
    () => checkForwardHost('0.0.0.0', false),
    (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT') && /--forward-any/.test((e as Error).message),
  );
  checkForwardHost('0.0.0.0', true);
});

test('a forward refuses a non-loopback address without allowNonLoopback, before starting anything', async () => {
  await assert.rejects(startLabForward({ netns: 'lfb-lab-none', listenHost: '0.0.0.0', listenPort: 0, targetIp: '10.99.0.10', targetPort: 80 }), (e: unknown) =>
    isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'),
  );
});

test('a forward carries 5 MiB each way byte-exact with half-close, and 20 connections at once', { timeout: 120_000 }, async () => {
  await withForward(async ({ fwd }) => {
    const big = randomBytes(5 * MiB);
    const back = await echoThrough(fwd.listen.port, big);
    assert.equal(back.length, big.length);
    assert.equal(sha(back), sha(big));

    const payloads = Array.from({ length: 20 }, () => randomBytes(256 * 1024 + Math.floor(Math.random() * 4096)));
    const answers = await Promise.all(payloads.map((p) => echoThrough(fwd.listen.port, p)));
    answers.forEach((a, i) => assert.equal(sha(a), sha(payloads[i]!), `connection ${i}`));
    await until('every connection closed', async () => (fwd.active() === 0 ? true : undefined), 5000);
  });
});

test('backpressure: a client that does not read stalls its sender instead of filling the relays', { timeout: 120_000 }, async () => {
  await withForward(async ({ fwd }) => {
    const total = 128 * MiB;
    const chunk = randomBytes(MiB);
    const rssBefore = rssMiB(fwd.relayPid);
    const s = connect({ port: fwd.listen.port, host: '127.0.0.1', allowHalfOpen: true });
    const got = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      s.on('error', reject);
      s.on('end', () => resolve());
    });
    s.on('data', (d: Buffer) => {
      got.update(d);
      received += d.length;
    });
    s.pause();
    for (let i = 0; i < total / MiB; i++) s.write(chunk);
    s.end();
    await new Promise((r) => setTimeout(r, 3000));
    // The kernel's socket buffers on the six hops hold some of it; the rest waits in the sender.
    assert.ok(s.writableLength > 32 * MiB, `only ${s.writableLength} bytes wait in the sender: something buffered the rest`);
    assert.ok(rssMiB(fwd.relayPid) - rssBefore < 48, `the relay grew from ${rssBefore} to ${rssMiB(fwd.relayPid)} MiB`);
    s.resume();
    await done;
    s.end();
    const want = createHash('sha256');
    for (let i = 0; i < total / MiB; i++) want.update(chunk);
    assert.equal(received, total);
    assert.equal(got.digest('hex'), want.digest('hex'));
  });
});

test('a refused target closes the client; connections over the cap are closed', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir('lifeboat-fwd-');
  try {
    await withNetns([], async ({ netns, gateway }) => {
      // Nothing listens on port 9 of the bridge address: the relay's connect is refused.
      const fwd = await startLabForward({ netns, socketDir: dir, listenHost: '127.0.0.1', listenPort: 0, targetIp: gateway, targetPort: 9 });
      try {
        const s = connect({ port: fwd.listen.port, host: '127.0.0.1' });
        let data = 0;
        s.on('data', (d: Buffer) => (data += d.length)).on('error', () => undefined);
        const closed = await Promise.race([
          new Promise<boolean>((r) => s.once('close', () => r(true))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
        ]);
        s.destroy();
        assert.equal(closed, true, 'the client connection stayed open to a refused target');
        assert.equal(data, 0);
      } finally {
        await fwd.close();
      }
    });
    await withForward(async ({ fwd }) => {
      const open: Socket[] = [];
      try {
        for (let i = 0; i < 2; i++) {
          const s = connect({ port: fwd.listen.port, host: '127.0.0.1' });
          open.push(s);
          await new Promise((r) => s.once('connect', r));
        }
        await until('two connections relayed', async () => (fwd.active() === 2 ? true : undefined), 5000);
        const third = connect({ port: fwd.listen.port, host: '127.0.0.1' });
        open.push(third);
        third.on('error', () => undefined);
        await new Promise<void>((r) => third.once('close', () => r()));
        // The two under the cap still carry data.
        open[0]!.write('still here');
        const echoed = await new Promise<string>((r) => open[0]!.once('data', (d: Buffer) => r(d.toString())));
        assert.equal(echoed, 'still here');
      } finally {
        for (const s of open) s.destroy();
      }
    }, 2);
  } finally {
    await cleanup();
  }
});

test('close() ends the relay and removes its socket; a forward whose owner is SIGKILLed loses its relay too', { timeout: 60_000 }, async () => {
  await withForward(async ({ fwd }) => {
    assert.equal(isRunning(fwd.relayPid), true);
    assert.equal(existsSync(fwd.socketPath), true);
    await fwd.close();
    assert.equal(isRunning(fwd.relayPid), false, 'the relay still runs after close()');
    assert.equal(existsSync(fwd.socketPath), false, 'the relay socket is left');
    const refused = await new Promise<boolean>((r) => {
      const s = connect({ port: fwd.listen.port, host: '127.0.0.1' });
      s.on('connect', () => (s.destroy(), r(false))).on('error', () => r(true));
    });
    assert.equal(refused, true, 'the host side still listens after close()');
  });

  await withNetns([], async ({ netns, gateway }) => {
    const echo = await echoIn(netns, gateway);
    // The owner: a separate node process holding a forward (no socketDir: a private folder in /tmp).
    const script = `const {startLabForward}=await import(${JSON.stringify(FORWARDER_JS)});const f=await startLabForward({netns:${JSON.stringify(netns)},listenHost:'127.0.0.1',listenPort:0,targetIp:${JSON.stringify(gateway)},targetPort:${echo.port}});process.stdout.write(JSON.stringify({pid:f.relayPid,socket:f.socketPath,port:f.listen.port})+'\\n');setInterval(()=>{},1000);`;
    const owner = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    owner.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    owner.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    let relayPid: number | undefined;
    try {
      const info = await until(
        `the owner's forward (${err})`,
        async () => (out.includes('\n') ? (JSON.parse(out) as { pid: number; socket: string; port: number }) : undefined),
        15_000,
      );
      relayPid = info.pid;
      assert.equal(sha(await echoThrough(info.port, Buffer.from('ping'))), sha(Buffer.from('ping')));
      owner.kill('SIGKILL');
      await until('the relay ends with its owner', async () => (isRunning(info.pid) ? undefined : true), 10_000);
      assert.equal(existsSync(info.socket), false, 'the relay socket is left');
      assert.equal(existsSync(info.socket.replace(/\/[^/]+$/, '')), false, "the relay's private folder is left");
    } finally {
      owner.kill('SIGKILL');
      if (relayPid !== undefined && isRunning(relayPid)) process.kill(relayPid, 'SIGKILL');
      echo.child.kill('SIGKILL');
    }
  });
});

test('removeStaleForwardSockets removes the socket of a relay killed with its owner, and leaves a live one', { timeout: 60_000 }, async () => {
  await withForward(async ({ netns, fwd, echoPort }) => {
    const dir = fwd.socketPath.replace(/\/[^/]+$/, '');
    // Owner and relay in one process group, killed together: the relay cannot remove its socket.
    const script = `const {startLabForward}=await import(${JSON.stringify(FORWARDER_JS)});const f=await startLabForward({netns:${JSON.stringify(netns)},socketDir:${JSON.stringify(dir)},listenHost:'127.0.0.1',listenPort:0,targetIp:'10.99.0.1',targetPort:${echoPort}});process.stdout.write(JSON.stringify({pid:f.relayPid,socket:f.socketPath})+'\\n');setInterval(()=>{},1000);`;
    const owner = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    owner.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    let relayPid: number | undefined;
    try {
      const info = await until(
        "the owner's forward",
        async () => (out.includes('\n') ? (JSON.parse(out) as { pid: number; socket: string }) : undefined),
        15_000,
      );
      relayPid = info.pid;
      process.kill(-owner.pid!, 'SIGKILL');
      await until('the relay is killed', async () => (isRunning(info.pid) ? undefined : true), 10_000);
      assert.equal(existsSync(info.socket), true, 'the killed relay removed its socket (then this case proves nothing)');
      // The relay's main thread shows as a zombie before its other threads have let go of its files: its listening
      // socket accepts for a moment more (seen on a loaded machine). Stale means refused, so wait for that first.
      const refused = (): Promise<boolean> =>
        new Promise((resolve) => {
          const c = connect({ path: info.socket });
          c.once('connect', () => (c.destroy(), resolve(false)));
          c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
        });
      await until('the dead relay closed its socket', async () => ((await refused()) ? true : undefined), 10_000);
      assert.deepEqual(await removeStaleForwardSockets(dir), [info.socket]);
      assert.equal(existsSync(info.socket), false);
      assert.equal(existsSync(fwd.socketPath), true, 'the live forward lost its socket');
      assert.equal(sha(await echoThrough(fwd.listen.port, Buffer.from('alive'))), sha(Buffer.from('alive')));
    } finally {
      owner.kill('SIGKILL');
      if (relayPid !== undefined && isRunning(relayPid)) process.kill(relayPid, 'SIGKILL');
    }
  });
});

test('a port in use fails with LFB_ERR_PORT_IN_USE and leaves no relay or socket', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir('lifeboat-fwd-');
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
  try {
    const port = (held.address() as { port: number }).port;
    await withNetns([], async ({ netns, gateway }) => {
      const before = await relayPids();
      await assert.rejects(
        startLabForward({ netns, socketDir: dir, listenHost: '127.0.0.1', listenPort: port, targetIp: gateway, targetPort: 80 }),
        (e: unknown) => isLifeboatError(e, 'LFB_ERR_PORT_IN_USE') && new RegExp(`127\\.0\\.0\\.1:${port}`).test((e as Error).message),
      );
      assert.deepEqual(await relayPids(), before, 'a relay was left');
      assert.deepEqual(await readdir(dir), []);
    });
  } finally {
    held.close();
    await cleanup();
  }
});

test('an ip that cannot be run fails the forward with LFB_ERR_LAB instead of crashing this process', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir('lifeboat-fwd-');
  const savedPath = process.env['PATH'];
  try {
    // Found on PATH and executable, but its interpreter does not exist: spawn() reports the failure as an 'error' event.
    await writeFile(join(dir, 'ip'), '#!/nonexistent/interpreter\n');
    await chmod(join(dir, 'ip'), 0o755);
    process.env['PATH'] = `${dir}:${savedPath ?? ''}`;
    await assert.rejects(
      startLabForward({ netns: 'lfb-lab-none', socketDir: dir, listenHost: '127.0.0.1', listenPort: 0, targetIp: '10.99.0.10', targetPort: 80 }),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_LAB') && /did not start: .*ENOENT/.test((e as Error).message),
    );
    assert.deepEqual((await readdir(dir)).sort(), ['ip']);
  } finally {
    process.env['PATH'] = savedPath;
    await cleanup();
  }
});
