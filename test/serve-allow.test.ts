import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { ControlInfo } from '../src/app/control-api.js';
import { encodeCall, recordHeader } from '../src/rpc/index.js';
import { BIN, cli, freePort, MiB, nonLoopbackAddress, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

/** This machine's own non-loopback IPv4 address: Linux carries a connection from it to 127.0.0.1 over lo. */

/** An RPC NULL call (procedure 0) in one record, as a TCP client sends it. */
function nullCall(prog: number, vers: number): Buffer {
  const call = encodeCall(0x5eed, prog, vers, 0, Buffer.alloc(0));
  return Buffer.concat([recordHeader(call.length), call]);
}

/**
 * Connects from `from` (default loopback), sends `hello` if any, and returns
 * the bytes the server sent before closing, or 'open' if it answered and kept
 * the connection (then closed by us).
 */
function talk(port: number, hello: Buffer | undefined, from?: string): Promise<{ bytes: number; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, ...(from ? { localAddress: from } : {}) });
    let bytes = 0;
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes, closedByServer });
    };
    s.on('connect', () => {
      if (hello) s.write(hello);
    });
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      setTimeout(() => finish(false), 200); // answered: that is all we need
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(true));
    const timer = setTimeout(() => finish(false), 3000);
  });
}

/** A portmapper NULL call over UDP; resolves the reply's size, or 0 if none came within `ms`. */
function udpNull(port: number, from: string, ms = 1000): Promise<number> {
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      resolve(0);
    }, ms);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(m.length);
    });
    sock.bind(0, from, () => sock.send(encodeCall(0x5eed, 100000, 2, 0, Buffer.alloc(0)), port, '127.0.0.1'));
  });
}

test('serve --allow: the portmapper, MOUNT, NFS and NBD refuse a peer outside the list at accept; the local CLI still drives the server', async () => {
  const { dir, cleanup } = await tempDir();
  const { address: OWN_ADDRESS, cleanup: dropAddress } = await nonLoopbackAddress();
  let s: Server | undefined;
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(7), MiB));
    const pmPort = await freePort();
    // Loopback is outside the list; this machine's own address is in it.
    const allow = `10.0.0.0/8,${OWN_ADDRESS}/32`;
    s = await startServer(repo, ['--allow', allow, '--portmap-port', String(pmPort)]);
    assert.match(s.log(), new RegExp(`portmapper serving on ${pmPort}`));
    const listeners: [string, number, Buffer | undefined][] = [
      ['portmapper', pmPort, nullCall(100000, 2)],
      ['MOUNT', s.mountPort, nullCall(100005, 3)],
      ['NFS', s.nfsPort, nullCall(100003, 3)],
      ['NBD', s.nbdPort, undefined], // an NBD server speaks first (its greeting)
    ];
    for (const [what, port, hello] of listeners) {
      const refused = await talk(port, hello);
      assert.deepEqual(refused, { bytes: 0, closedByServer: true }, `${what} on ${port}: a loopback peer is closed on before any byte`);
      const allowed = await talk(port, hello, OWN_ADDRESS);
      assert.ok(allowed.bytes > 0, `${what} on ${port} answers a peer in the list (${OWN_ADDRESS})`);
    }
    assert.equal(await udpNull(pmPort, '127.0.0.1'), 0, 'the portmapper over UDP does not answer a loopback peer');
    assert.ok((await udpNull(pmPort, OWN_ADDRESS)) > 0, 'the portmapper over UDP answers a peer in the list');
    // The control API is loopback-only by design and not subject to --allow: the CLI works.
    const started = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'a1']);
    assert.equal(started.code, 0, started.stderr);
    const list = await cli(['instant', 'list', '--repo', repo]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^a1\s+running/m);
  } finally {
    if (s) await kill9(s);
    await dropAddress();
    await cleanup();
  }
});

test('serve: a second server for the same repository refuses to start and names the running one, whose control file stays', async () => {
  const { dir, cleanup } = await tempDir();
  let first: Server | undefined;
  let second: Server | undefined;
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(7), MiB));
    first = await startServer(repo, ['--no-portmap']);
    const control = JSON.parse(await readFile(join(repo, 'instant', 'control.json'), 'utf8')) as ControlInfo;
    assert.equal(control.pid, first.proc.pid);
    const other = spawn(
      process.execPath,
      [
        BIN,
        'serve',
        '--repo',
        repo,
        '--bind',
        '127.0.0.1',
        '--no-portmap',
        '--nfs-port',
        '0',
        '--mount-port',
        '0',
        '--nbd-port',
        '0',
        '--state-dir',
        `${repo}.state`,
        '--http-port',
        '0',
        '--no-tls',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    other.stdout.on('data', (d: Buffer) => (out += d.toString()));
    other.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        other.kill('SIGKILL');
        resolve(null);
      }, 20_000);
      other.on('close', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.notEqual(code, null, `the second server started beside the first: ${out}`);
    assert.equal(code, 5, out);
    assert.match(out, /LFB_ERR_SERVER_RUNNING/);
    assert.match(out, new RegExp(`process ${first.proc.pid} on .*NFS on port ${first.nfsPort}, MOUNT on ${first.mountPort}, NBD on ${first.nbdPort}`));
    assert.deepEqual(JSON.parse(await readFile(join(repo, 'instant', 'control.json'), 'utf8')), control, "the first server's control file is untouched");
    const list = await cli(['instant', 'list', '--repo', repo]);
    assert.equal(list.code, 0, list.stderr);
    // A killed server's lock is stale: the next one starts.
    await kill9(first);
    first = undefined;
    second = await startServer(repo, ['--no-portmap']);
    assert.equal((JSON.parse(await readFile(join(repo, 'instant', 'control.json'), 'utf8')) as ControlInfo).pid, second.proc.pid);
  } finally {
    if (first) await kill9(first);
    if (second) await kill9(second);
    await cleanup();
  }
});
