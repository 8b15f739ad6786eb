import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { controlFile, startControlApi, type ControlInfo } from '../src/app/control-api.js';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository } from '../src/repository/index.js';
import { MiB, nonLoopbackAddress, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';

const PORTS = { nfsPort: 2049, mountPort: 1058, portmap: 'off', host: '127.0.0.1' };

/** A repository with one job ("vm", one 1 MiB disk) and one point, and a real InstantRecovery on it. */
async function withRecovery(fn: (repo: string, ir: InstantRecovery) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(3), MiB));
    const ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'));
    try {
      await fn(repo, ir);
    } finally {
      await ir.close();
    }
  } finally {
    await cleanup();
  }
}

interface Reply {
  status: number;
  body: { code?: string; message?: string } & Record<string, unknown>;
}

/** One HTTP request to the control API; `body` is sent as given (a string is not JSON-encoded). */
function call(
  info: ControlInfo,
  method: string,
  path: string,
  body?: unknown,
  opts: { token?: string | null; headers?: Record<string, string | number>; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const token = opts.token === undefined ? info.token : opts.token;
    const req = request(
      {
        host: '127.0.0.1',
        port: info.port,
        method,
        path,
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(data ? { 'content-type': 'application/json', ...(opts.headers?.['transfer-encoding'] ? {} : { 'content-length': data.length }) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          clearTimeout(timer);
          req.destroy(); // a request whose body was refused may still be unsent
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Reply['body'] });
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to ${method} ${path} within ${opts.timeoutMs ?? 5000} ms`));
    }, opts.timeoutMs ?? 5000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    if (data) req.end(data);
    else if (!opts.headers) req.end();
    else req.flushHeaders();
  });
}

test('control API: control.json (the token) is 0600 and instant/ is 0700, even if it existed before', async () => {
  await withRecovery(async (repo, ir) => {
    await mkdir(join(repo, 'instant'), { mode: 0o755 });
    const api = await startControlApi(repo, ir, PORTS);
    try {
      assert.equal((await stat(join(repo, 'instant'))).mode & 0o777, 0o700);
      assert.equal((await stat(controlFile(repo))).mode & 0o777, 0o600);
      assert.equal((JSON.parse(await readFile(controlFile(repo), 'utf8')) as ControlInfo).token, api.info.token);
    } finally {
      await api.close();
    }
  });
});

test('control API: malformed or mistyped bodies are answered 400 with a stable code; good ones still work', async () => {
  await withRecovery(async (repo, ir) => {
    const api = await startControlApi(repo, ir, PORTS);
    try {
      const bad: [string, string, unknown, RegExp][] = [
        ['POST', '/sessions', '{"job": "vm",', /not valid JSON/],
        ['POST', '/sessions', '[1,2]', /a JSON object/],
        ['POST', '/sessions', 'null', /a JSON object/],
        ['POST', '/sessions', { point: 'latest' }, /"job" must be a string/],
        ['POST', '/sessions', { job: 5, point: 'latest' }, /"job" must be a string/],
        ['POST', '/sessions', { job: 'vm' }, /"point" must be a string/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', name: 7 }, /"name" must be a string/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', cacheDir: 'cache/here' }, /"cacheDir" must be an absolute path/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', cacheDir: ['/tmp'] }, /"cacheDir" must be an absolute path/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', disks: '0' }, /"disks" must be an array of disk indexes/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', disks: [0.5] }, /"disks" must be an array of disk indexes/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', boot: 'yes' }, /"boot" must be an object/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', boot: { accel: 'xen' } }, /"boot.accel" must be one of kvm, tcg/],
        ['POST', '/sessions', { job: 'vm', point: 'latest', cachedir: '/tmp' }, /unknown field "cachedir"/],
        ['POST', '/sessions/s1/disks', { size: -512 }, /"size" must be a positive integer/],
        ['POST', '/sessions/s1/disks', { size: '1G' }, /"size" must be a positive integer/],
        ['POST', '/sessions/s1/disks', { size: 2 ** 60 }, /"size" must be a positive integer/],
        ['POST', '/sessions/s1/migrate', { to: '/prod', format: 'vmdk', finish: false }, /"format" must be one of raw, qcow2/],
        ['POST', '/sessions/s1/migrate', { to: '/prod', format: 'raw', rate: 'fast' }, /"rate" must be a positive number/],
        ['POST', '/sessions/s1/migrate', { to: 'prod', format: 'raw' }, /"to" must be an absolute path/],
        ['POST', '/sessions/s1/migrate', { format: 'raw', finish: 'yes' }, /"finish" must be true or false/],
      ];
      for (const [method, path, body, why] of bad) {
        const r = await call(api.info, method, path, body);
        assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'LFB_ERR_USAGE', `${JSON.stringify(body)}: ${r.body.message}`);
        assert.match(r.body.message ?? '', why);
      }
      // What the CLI sends still works, end to end on the real sessions.
      const started = await call(api.info, 'POST', '/sessions', { job: 'vm', point: 'latest', name: 's1', disks: [0] });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const added = await call(api.info, 'POST', '/sessions/s1/disks', { size: MiB, name: 'scratch' });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      assert.equal((await call(api.info, 'GET', '/sessions/s1')).status, 200);
      assert.equal((await call(api.info, 'DELETE', '/sessions/s1')).status, 200);
      const gone = await call(api.info, 'GET', '/sessions/s1');
      assert.equal(gone.status, 404);
      assert.equal(gone.body.code, 'LFB_ERR_SESSION_NOT_FOUND');
    } finally {
      await api.close();
    }
  });
});

test('control API: a body over the limit is answered 413 at once, not a hung or reset request', async () => {
  await withRecovery(async (repo, ir) => {
    const api = await startControlApi(repo, ir, PORTS);
    try {
      // Announced too large: answered from the header, without waiting for a body that never comes.
      const announced = await call(api.info, 'POST', '/sessions', undefined, { headers: { 'content-type': 'application/json', 'content-length': 50 * MiB } });
      assert.equal(announced.status, 413);
      assert.equal(announced.body.code, 'LFB_ERR_USAGE');
      // Sent without a length (chunked) and too large: answered once the limit is passed.
      const big = JSON.stringify({ job: 'vm', point: 'latest', name: 'x'.repeat(2 * MiB) });
      const chunked = await call(api.info, 'POST', '/sessions', big, { headers: { 'transfer-encoding': 'chunked' } });
      assert.equal(chunked.status, 413);
      // The server goes on answering.
      assert.equal((await call(api.info, 'GET', '/sessions')).status, 200);
    } finally {
      await api.close();
    }
  });
});

test('control API: the token is required and compared whole', async () => {
  await withRecovery(async (repo, ir) => {
    const api = await startControlApi(repo, ir, PORTS);
    try {
      const t = api.info.token;
      for (const token of [null, '', t.slice(0, -1), `${t}0`, `${t.slice(0, -1)}${t.endsWith('0') ? '1' : '0'}`, t.toUpperCase()]) {
        if (token === t) continue;
        const r = await call(api.info, 'GET', '/sessions', undefined, { token });
        assert.equal(r.status, 401, `token ${String(token)}`);
      }
      assert.equal((await call(api.info, 'GET', '/sessions')).status, 200);
    } finally {
      await api.close();
    }
  });
});

test('control API: a server removes only its own control file', async () => {
  await withRecovery(async (repo, ir) => {
    const first = await startControlApi(repo, ir, PORTS);
    const second = await startControlApi(repo, ir, PORTS);
    try {
      await first.close();
      const left = JSON.parse(await readFile(controlFile(repo), 'utf8')) as ControlInfo;
      assert.equal(left.token, second.info.token, "closing the first server left the second one's control file");
    } finally {
      await first.close();
      await second.close();
    }
    await assert.rejects(stat(controlFile(repo)), /ENOENT/);
  });
});

test('control API: a peer that is not on loopback is refused at accept', async () => {
  const { address: own, cleanup: dropAddress } = await nonLoopbackAddress();
  await withRecovery(async (repo, ir) => {
    const api = await startControlApi(repo, ir, PORTS);
    try {
      // Linux routes a connection to 127.0.0.1 from a local non-loopback address over lo: the server sees that address.
      const s = connect({ host: '127.0.0.1', port: api.info.port, localAddress: own });
      let received = 0;
      s.on('data', (d: Buffer) => (received += d.length));
      s.on('connect', () => s.write(`GET /sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.info.token}\r\n\r\n`));
      await new Promise<void>((resolve, reject) => {
        s.on('close', () => resolve());
        s.on('error', () => undefined);
        setTimeout(() => reject(new Error('the connection from a non-loopback address stayed open')), 5000);
      });
      assert.equal(received, 0, 'no byte answered to a peer off loopback');
    } finally {
      await api.close();
    }
  }).finally(dropAddress);
});
