// The CLI's calls to a running server's control API: a server that is not there (its control file names a port
// nobody listens on) is LFB_ERR_SERVER_NOT_RUNNING, and `files ls|find|get` then read the point themselves; a server
// that took the request and gave no answer (a cut connection, a deadline) is LFB_ERR_SERVER_NO_ANSWER, and the CLI
// says so instead of booting a second appliance beside the server's, still opening. In process, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, tempDir, until } from './helpers.js';
import { callControl, controlFile } from '../src/app/control-api.js';
import { copyThroughControl } from '../src/app/control-files.js';
import { isLifeboatError } from '../src/core/errors.js';
import { lsThroughServer, getThroughServer } from '../src/cli/files-hand-off.js';

/** A loopback server whose connections `onSocket` handles; close() ends them all. */
async function loopback(onSocket: (s: Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const held = new Set<Socket>();
  const server: Server = createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of held) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Reads each request and then cuts the connection without a byte of answer. */
const cutter = () => loopback((s) => s.once('data', () => s.destroy()));

/** Reads each request and never answers (a server stopped with SIGSTOP, or hung). */
const silent = () => loopback(() => undefined);

async function pointControlFileAt(dir: string, port: number): Promise<void> {
  await mkdir(join(dir, 'instant'), { recursive: true });
  await writeFile(controlFile(dir), JSON.stringify({ pid: process.pid, port, token: 't', nfsPort: 0 }));
}

const req = { job: 'vm', point: 'latest', path: 'disk0p1:/etc' };

test('a control file whose server is gone: LFB_ERR_SERVER_NOT_RUNNING, and files ls reads the point itself', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-control-gone-');
  try {
    await pointControlFileAt(dir, await freePort());
    await assert.rejects(callControl(dir, 'GET', '/sessions'), (e: unknown) => isLifeboatError(e, 'LFB_ERR_SERVER_NOT_RUNNING'));
    await assert.rejects(copyThroughControl(dir, req), (e: unknown) => isLifeboatError(e, 'LFB_ERR_SERVER_NOT_RUNNING'));
    assert.equal(await lsThroughServer(dir, () => undefined, req), undefined, 'files ls falls back to its own appliance');
  } finally {
    await cleanup();
  }
});

test('a server that takes the request and cuts it: LFB_ERR_SERVER_NO_ANSWER, and files ls|get do not fall back', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-control-cut-');
  const s = await cutter();
  try {
    await pointControlFileAt(dir, s.port);
    const noAnswer = (e: unknown): boolean =>
      isLifeboatError(e, 'LFB_ERR_SERVER_NO_ANSWER') && /gave no answer to POST \/files\/(ls|copy)/.test((e as Error).message);
    await assert.rejects(callControl(dir, 'POST', '/files/ls', req), noAnswer);
    await assert.rejects(copyThroughControl(dir, req), noAnswer);
    await assert.rejects(
      lsThroughServer(dir, () => undefined, req),
      noAnswer,
    );
    await assert.rejects(
      getThroughServer(dir, () => undefined, req, join(dir, 'out')),
      noAnswer,
    );
  } finally {
    await s.close();
    await cleanup();
  }
});

test("a copy's head that never comes is LFB_ERR_SERVER_NO_ANSWER at the deadline; a body that pauses longer is not cut", async () => {
  const { dir, cleanup } = await tempDir('lifeboat-control-silent-');
  const s = await silent();
  try {
    await pointControlFileAt(dir, s.port);
    const t0 = performance.now();
    await assert.rejects(
      copyThroughControl(dir, req, { headTimeoutMs: 300 }),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_SERVER_NO_ANSWER') && /POST \/files\/copy/.test((e as Error).message),
    );
    const waited = performance.now() - t0;
    assert.ok(waited >= 250 && waited < 5000, `refused after ${waited.toFixed(0)} ms`);
  } finally {
    await s.close();
  }
  // The head at once, then the body after twice the head's deadline: a copy waits on the appliance as long as it takes.
  const head = encodeURIComponent(JSON.stringify({ pointId: 'p', source: 'disk0p1:/etc', type: 'directory', entry: 'etc' }));
  const slow = await loopback((sock) =>
    sock.once('data', () => {
      sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-lifeboat-copy: ${head}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n`);
      sock.write('5\r\nfirst\r\n');
      setTimeout(() => sock.end('6\r\nsecond\r\n0\r\n\r\n'), 600);
    }),
  );
  try {
    await pointControlFileAt(dir, slow.port);
    const copy = await copyThroughControl(dir, req, { headTimeoutMs: 300 });
    assert.equal(copy.entry, 'etc');
    const chunks: Buffer[] = [];
    for await (const c of copy.body) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'firstsecond');
  } finally {
    await slow.close();
    await cleanup();
  }
});

test('a copy whose head cannot be read is LFB_ERR_INTERNAL, and its connection is let go', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-control-bad-head-');
  let closed = false;
  const bad = await loopback((sock) => {
    sock.on('close', () => (closed = true));
    sock.once('data', () => {
      // A body that never ends: only the client's close ends the connection.
      sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-lifeboat-copy: %E0%A4%A\r\ntransfer-encoding: chunked\r\n\r\n`);
      sock.write('5\r\nfirst\r\n');
    });
  });
  try {
    await pointControlFileAt(dir, bad.port);
    await assert.rejects(copyThroughControl(dir, req), (e: unknown) => isLifeboatError(e, 'LFB_ERR_INTERNAL') && /head/.test((e as Error).message));
    await until('the connection to close', async () => (closed ? true : undefined), 2000);
  } finally {
    await bad.close();
    await cleanup();
  }
});

test('a head that never comes says so with its deadline', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-control-deadline-');
  const s = await silent();
  try {
    await pointControlFileAt(dir, s.port);
    await assert.rejects(
      copyThroughControl(dir, req, { headTimeoutMs: 200 }),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_SERVER_NO_ANSWER') && /did not answer POST \/files\/copy within 0\.2 s/.test((e as Error).message),
    );
  } finally {
    await s.close();
    await cleanup();
  }
});
