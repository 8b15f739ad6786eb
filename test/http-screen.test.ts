/**
 * The screen bridge (GET /api/v1/sessions/{name}/screen) without QEMU and
 * without a browser: the API over a session whose "VM" is a fake VNC server
 * on a unix socket, reached with a plain `ws` client. Who may open it, what
 * it carries both ways, that a reader who stops reading does not make the
 * server buffer without bound, the cap on viewers, and the close when the
 * session goes. test/console-screen.test.ts does the same against QEMU.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import type { InstantRecovery, SessionInfo } from '../src/recovery/index.js';
import { selfSignedCertificate } from '../src/auth/index.js';
import { systemClock } from '../src/core/clock.js';
import { createHttpApi, type ApiServer } from '../src/service/http/api.js';
import { MAX_VIEWERS } from '../src/service/http/screen.js';
import { PASSWORD, makeFixture, type Fixture } from './http-api-fixture.js';
import { until } from './helpers.js';

const RFB_VERSION = 'RFB 003.008\n';

/** A VNC server as far as the bridge can tell: says its version, records what it gets, and can flood. */
class FakeVnc {
  readonly server: NetServer;
  readonly sockets: Socket[] = [];
  received = Buffer.alloc(0);
  written = 0;
  flood = false;

  constructor(readonly path: string) {
    this.server = createServer((s) => {
      this.sockets.push(s);
      s.on('data', (d: Buffer) => (this.received = Buffer.concat([this.received, d])));
      s.on('error', () => undefined);
      s.write(RFB_VERSION);
      if (this.flood) this.pump(s);
    });
  }

  /** Writes a counting pattern while the socket takes it, and again on each drain. */
  private pump(s: Socket): void {
    const chunk = 64 * 1024;
    const write = (): void => {
      while (!s.destroyed) {
        const b = Buffer.alloc(chunk);
        for (let i = 0; i < chunk; i += 4) b.writeUInt32BE((this.written + i) >>> 0, i);
        this.written += chunk;
        if (!s.write(b)) return;
      }
    };
    s.on('drain', write);
    write();
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let fx: Fixture;
let api: ApiServer;
let base: string;
let vnc: FakeVnc;
/** The sessions the stub recovery has: name → info. */
const sessions = new Map<string, SessionInfo>();

function sessionInfo(name: string, vm: Partial<NonNullable<SessionInfo['vm']>> | undefined): SessionInfo {
  return {
    name,
    job: 'web01',
    pointId: 'p1',
    createdAt: new Date().toISOString(),
    dir: fx.dir,
    vmx: `${name}.vmx`,
    disks: [],
    overlayFreeBytes: null,
    overlayTotalBytes: null,
    state: 'running',
    ...(vm
      ? {
          vm: {
            pid: process.pid,
            accel: 'tcg',
            network: 'none',
            startedAt: new Date().toISOString(),
            state: 'running',
            serialLog: join(fx.dir, 'serial.log'),
            qmpSocket: join(fx.dir, 'qmp.sock'),
            ...vm,
          } as NonNullable<SessionInfo['vm']>,
        }
      : {}),
  };
}

before(async () => {
  fx = await makeFixture();
  vnc = new FakeVnc(join(fx.dir, 'vnc.sock'));
  await vnc.listen();
  const stub = { info: (n: string) => sessions.get(n), list: () => [...sessions.values()] } as unknown as InstantRecovery;
  api = await createHttpApi({ ...fx.deps, recovery: new Map([[fx.repo, stub]]) });
  await api.listen({ host: '127.0.0.1', port: 0 });
  base = `127.0.0.1:${(api.server.address() as AddressInfo).port}`;
});

after(async () => {
  await api?.close();
  await vnc?.close();
  await fx?.close();
});

const bearer = (role: 'admin' | 'operator' | 'viewer'): Record<string, string> => ({ authorization: `Bearer ${fx.tokens[role]}` });

async function cookieOf(role: 'operator' | 'viewer'): Promise<string> {
  const r = await fetch(`http://${base}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: role, password: PASSWORD }),
  });
  assert.equal(r.status, 200);
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

type Opened = { ws: WebSocket; first: Promise<Buffer> } | { status: number; body: { code: string; message: string } };

/** Opens the screen of `name`: the socket and its first message, or the HTTP refusal. */
function openScreen(name: string, headers: Record<string, string>, origin?: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${base}/api/v1/sessions/${name}/screen`, { headers, ...(origin !== undefined ? { origin } : {}) });
    const first = new Promise<Buffer>((res) => ws.once('message', (d: Buffer) => res(d)));
    ws.once('open', () => resolve({ ws, first }));
    // A refusal: the server answers and closes the connection (nothing else may come on it).
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      const gone = new Promise((r) => res.socket.once('close', r));
      const timeout = setTimeout(() => reject(new Error('the server left a refused upgrade open')), 5000);
      res.on(
        'end',
        () =>
          void gone.then(() => {
            clearTimeout(timeout);
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code: string; message: string } });
          }),
      );
    });
    ws.once('error', (e) => reject(e));
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

test('the OpenAPI document lists the screen route with the operator role, so the table-driven 401/403 tests of test/http-api.test.ts cover it', async () => {
  const doc = (await api.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as {
    paths: Record<string, Record<string, { 'x-lifeboat-role'?: string; parameters?: { name: string; in: string }[] }>>;
  };
  const op = doc.paths['/api/v1/sessions/{name}/screen']?.['get'];
  assert.ok(op, Object.keys(doc.paths).join(', '));
  assert.equal(op['x-lifeboat-role'], 'operator');
  assert.deepEqual(op.parameters?.map((p) => `${p.in} ${p.name}`).sort(), ['path name', 'query repo']);
});

test('who may open a screen: 401 without credentials, 403 for a viewer, 403 for a cookie from another origin or none; an operator and a cookie from the own origin get RFB', async () => {
  sessions.set('vm1', sessionInfo('vm1', { vncSocket: vnc.path }));
  try {
    const anon = await openScreen('vm1', {});
    assert.ok('status' in anon && anon.status === 401 && anon.body.code === 'LFB_ERR_UNAUTHENTICATED', JSON.stringify(anon));
    const viewer = await openScreen('vm1', bearer('viewer'));
    assert.ok('status' in viewer && viewer.status === 403 && viewer.body.code === 'LFB_ERR_FORBIDDEN', JSON.stringify(viewer));
    const viewerCookie = await openScreen('vm1', { cookie: await cookieOf('viewer') }, `http://${base}`);
    assert.ok('status' in viewerCookie && viewerCookie.status === 403, JSON.stringify(viewerCookie));

    const cookie = await cookieOf('operator');
    for (const origin of ['http://evil.example', `https://${base}`, undefined]) {
      const r = await openScreen('vm1', { cookie }, origin);
      assert.ok('status' in r && r.status === 403 && r.body.code === 'LFB_ERR_FORBIDDEN', `${String(origin)}: ${JSON.stringify(r)}`);
    }
    for (const [headers, origin] of [[{ cookie }, `http://${base}`] as const, [bearer('operator'), undefined] as const]) {
      const r = await openScreen('vm1', headers, origin);
      assert.ok('ws' in r, JSON.stringify(r));
      assert.equal((await r.first).toString(), RFB_VERSION);
      r.ws.close();
    }
    // A plain GET is not an upgrade: an error in the API's shape, after the same checks.
    const plain = await fetch(`http://${base}/api/v1/sessions/vm1/screen`, { headers: bearer('operator') });
    assert.equal(plain.status, 426);
    assert.equal(((await plain.json()) as { code: string }).code, 'LFB_ERR_INVALID_ARGUMENT');
  } finally {
    sessions.clear();
  }
});

test('no screen: a session without a VM, a VM that exited, a VM an older server booted without VNC: 409 LFB_ERR_NO_SCREEN; no session: 404', async () => {
  sessions.set('plain', sessionInfo('plain', undefined));
  sessions.set('exited', sessionInfo('exited', { vncSocket: vnc.path, state: 'exited', exit: 'QEMU exited' }));
  sessions.set('old', sessionInfo('old', {}));
  try {
    for (const name of ['plain', 'exited', 'old']) {
      const r = await openScreen(name, bearer('operator'));
      assert.ok('status' in r && r.status === 409 && r.body.code === 'LFB_ERR_NO_SCREEN', `${name}: ${JSON.stringify(r)}`);
    }
    const none = await openScreen('nothing', bearer('operator'));
    assert.ok('status' in none && none.status === 404 && none.body.code === 'LFB_ERR_SESSION_NOT_FOUND', JSON.stringify(none));
  } finally {
    sessions.clear();
  }
});

test('bytes both ways; a reader that stops reading stops the VM side (bounded), and then gets every byte in order', { timeout: 60_000 }, async () => {
  sessions.set('flood', sessionInfo('flood', { vncSocket: vnc.path }));
  vnc.flood = true;
  vnc.received = Buffer.alloc(0);
  vnc.written = 0;
  try {
    const r = await openScreen('flood', bearer('operator'));
    assert.ok('ws' in r);
    const { ws } = r;
    let headerSeen = false;
    let got = 0;
    let bad = -1;
    let pending = Buffer.alloc(0);
    ws.on('message', (d: Buffer) => {
      // The version string, then a counting pattern: every 4 bytes the offset they start at.
      pending = Buffer.concat([pending, d]);
      if (!headerSeen) {
        if (pending.length < RFB_VERSION.length) return;
        assert.equal(pending.subarray(0, RFB_VERSION.length).toString(), RFB_VERSION);
        pending = pending.subarray(RFB_VERSION.length);
        headerSeen = true;
      }
      let at = 0;
      for (; at + 4 <= pending.length; at += 4) {
        if (pending.readUInt32BE(at) !== got >>> 0 && bad < 0) bad = got;
        got += 4;
      }
      pending = pending.subarray(at);
    });
    ws.send(Buffer.from('client says hello'));
    await until('the VM side to receive the input', async () => (vnc.received.toString() === 'client says hello' ? true : undefined), 10_000, 20);

    await until('some data to flow', async () => (got > 1024 * 1024 ? true : undefined), 10_000, 20);
    ws.pause();
    // Stalled: the VM side can write only what the buffers on the way hold.
    let last = -1;
    await until(
      'the VM side to stall',
      async () => {
        const now = vnc.written;
        const stalled = now === last;
        last = now;
        return stalled ? true : undefined;
      },
      20_000,
      500,
    );
    const stalledAt = vnc.written;
    const inFlight = stalledAt - got;
    assert.ok(inFlight < 24 * 1024 * 1024, `${inFlight} bytes in flight while the reader does not read`);
    ws.resume();
    await until('the reader to catch up', async () => (got >= stalledAt ? true : undefined), 20_000, 20);
    assert.equal(bad, -1, `the pattern broke at byte ${bad}`);
    ws.close();
    console.log(
      `# stalled with ${(inFlight / 1048576).toFixed(1)} MiB between the VM side and the paused reader; ${(got / 1048576).toFixed(1)} MiB read in order`,
    );
  } finally {
    vnc.flood = false;
    sessions.clear();
  }
});

test(`at most ${MAX_VIEWERS} screens per session (409 LFB_ERR_SCREEN_BUSY); each closes when the session stops`, async () => {
  sessions.set('vm2', sessionInfo('vm2', { vncSocket: vnc.path }));
  const open: WebSocket[] = [];
  try {
    for (let i = 0; i < MAX_VIEWERS; i++) {
      const r = await openScreen('vm2', bearer('operator'));
      assert.ok('ws' in r, JSON.stringify(r));
      assert.equal((await r.first).toString(), RFB_VERSION);
      open.push(r.ws);
    }
    const more = await openScreen('vm2', bearer('operator'));
    assert.ok('status' in more && more.status === 409 && more.body.code === 'LFB_ERR_SCREEN_BUSY', JSON.stringify(more));
    const ends = open.map(closed);
    sessions.delete('vm2');
    const t0 = Date.now();
    for (const e of await Promise.all(ends)) assert.deepEqual(e, { code: 1000, reason: 'the session stopped' });
    assert.ok(Date.now() - t0 < 3000);
    // The slots are free again.
    sessions.set('vm2', sessionInfo('vm2', { vncSocket: vnc.path }));
    const again = await openScreen('vm2', bearer('operator'));
    assert.ok('ws' in again, JSON.stringify(again));
    again.ws.close();
  } finally {
    for (const ws of open) ws.terminate();
    sessions.clear();
  }
});

test('over HTTPS the own origin is https://<host>: a cookie from the http:// page of the same host and port is refused', async () => {
  const tls = await selfSignedCertificate(join(fx.dir, 'tls-state'), { clock: systemClock });
  const stub = { info: (n: string) => sessions.get(n), list: () => [...sessions.values()] } as unknown as InstantRecovery;
  const secure = await createHttpApi({ ...fx.deps, https: { cert: tls.cert, key: tls.key }, recovery: new Map([[fx.repo, stub]]) });
  sessions.set('vm3', sessionInfo('vm3', { vncSocket: vnc.path }));
  try {
    await secure.listen({ host: '127.0.0.1', port: 0 });
    const host = `127.0.0.1:${(secure.server.address() as AddressInfo).port}`;
    const login = await secure.inject({ method: 'POST', url: '/api/v1/login', payload: { user: 'operator', password: PASSWORD } });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const open = (origin: string): Promise<{ status: number } | { rfb: string }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://${host}/api/v1/sessions/vm3/screen`, { headers: { cookie }, origin, ca: tls.cert });
        ws.once('message', (d: Buffer) => {
          ws.close();
          resolve({ rfb: d.toString() });
        });
        ws.once('unexpected-response', (req, res) => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0 });
        });
        ws.once('error', reject);
      });
    assert.deepEqual(await open(`http://${host}`), { status: 403 });
    assert.deepEqual(await open(`https://${host}`), { rfb: RFB_VERSION });
  } finally {
    sessions.clear();
    await secure.close();
  }
});
