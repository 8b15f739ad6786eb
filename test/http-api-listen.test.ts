/**
 * The HTTP API on a real listening HTTPS server (an ephemeral port on
 * loopback, the self-signed certificate src/auth makes): TLS, the Secure
 * session cookie, and Server-Sent Events on a real socket, with keepalive
 * comments, cleanup when the client goes, and a server that closes with
 * streams open.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { selfSignedCertificate } from '../src/auth/index.js';
import { systemClock } from '../src/core/clock.js';
import { PASSWORD, makeFixture, type Fixture } from './http-api-fixture.js';
import { tempDir } from './helpers.js';

let fx: Fixture;
let port: number;
let ca: Buffer;
let certDir: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  certDir = await tempDir('lifeboat-http-tls-');
  const tls = await selfSignedCertificate(join(certDir.dir, 'state'), { clock: systemClock });
  ca = tls.cert;
  fx = await makeFixture({ https: { cert: tls.cert, key: tls.key }, events: { pollMs: 20, keepaliveMs: 50, maxStreams: 2 } });
  await fx.api.listen({ port: 0, host: '127.0.0.1' });
  port = (fx.api.server.address() as AddressInfo).port;
});
after(async () => {
  await fx?.close();
  await certDir?.cleanup();
});

function send(method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<{ res: IncomingMessage; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      { host: '127.0.0.1', port, method, path, ca, headers: { ...headers, ...(payload ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ res, text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface OpenedStream {
  readonly status: number;
  /** Everything received so far (it grows while the stream is open). */
  readonly text: string;
  readonly ended: Promise<void>;
  /** Resolves once what has come satisfies `until` (or the stream ended). */
  more(until: (text: string) => boolean): Promise<string>;
  close(): void;
}

/**
 * Opens an event stream and reads it until `until` says enough (or it ends). A refused stream
 * (any status but 200) is read to its end.
 */
function openStream(path: string, token: string, until: (text: string) => boolean): Promise<OpenedStream> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status === 200) assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      let text = '';
      let over = false;
      const waiters: { until: (t: string) => boolean; resolve: (t: string) => void }[] = [];
      const settle = (): void => {
        for (const w of [...waiters])
          if (over || w.until(text)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(text);
          }
      };
      const ended = new Promise<void>((r) => res.on('close', () => r()));
      const stream: OpenedStream = {
        status,
        get text() {
          return text;
        },
        ended,
        more: (u) => new Promise((r) => (waiters.push({ until: u, resolve: r }), settle())),
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        settle();
      });
      res.on('close', () => {
        over = true;
        settle();
      });
      void stream.more(status === 200 ? until : () => false).then(() => resolve(stream));
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  for (const t0 = Date.now(); !ok(); await new Promise((r) => setTimeout(r, 10))) if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
}

test('HTTPS with the self-signed certificate; plain HTTP on the port gets no API; the login cookie is Secure', async () => {
  const docRes = await send('GET', '/api/v1/openapi.json');
  assert.equal(docRes.res.statusCode, 200);
  assert.equal((JSON.parse(docRes.text) as { openapi: string }).openapi, '3.1.0');

  const plain = await new Promise<string>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/v1/openapi.json' }, (res) => resolve(`status ${res.statusCode}`));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
  assert.doesNotMatch(plain, /status 200/);

  const login = await send('POST', '/api/v1/login', {}, { user: 'viewer', password: PASSWORD });
  assert.equal(login.res.statusCode, 200, login.text);
  const cookie = String(login.res.headers['set-cookie']);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  assert.match(cookie, /; Secure/);
  const me = await send('GET', '/api/v1/me', { cookie: cookie.split(';')[0]! });
  const who = JSON.parse(me.text) as { user: string; via: string; csrfToken: string };
  assert.deepEqual([who.user, who.via, who.csrfToken], ['viewer', 'cookie', (JSON.parse(login.text) as { csrfToken: string }).csrfToken]);
});

test("a run's event stream on a real socket: the run, keepalive comments, the runner's watch released when the client goes; a finished run's stream ends by itself", async () => {
  // A run the catalog says is running (no backup behind it): the stream stays open.
  const queued = await fx.catalog.createRun({ repo: fx.repo, job: 'web01', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: new Date().toISOString() });
  await fx.catalog.updateRun(queued.id, { state: 'running', startedAt: new Date().toISOString() });
  await fx.catalog.appendLog(queued.id, [{ at: new Date().toISOString(), level: 'info', message: 'reading disk 1' }]);

  const s = await openStream(`/api/v1/runs/${queued.id}/events`, fx.tokens.viewer, (t) => t.includes(': keepalive') && t.includes('event: run'));
  assert.match(s.text, /^: stream open\n\n/);
  assert.match(s.text, /event: log\ndata: \{"runId":\d+,"seq":1,.*"message":"reading disk 1"\}/);
  assert.match(s.text, /event: run\ndata: \{"id":\d+.*"state":"running"/);
  assert.equal(fx.runner.watchers.get(queued.id)?.size, 1, 'the stream follows the runner');
  for (const w of fx.runner.watchers.get(queued.id)!) w({ disk: 0, diskCount: 1, bytesDone: 1048576, bytesTotal: 3145728 });
  assert.match(
    await s.more((t) => t.includes('event: progress')),
    /event: progress\ndata: \{"disk":0,"diskCount":1,"bytesDone":1048576,"bytesTotal":3145728\}\n\n/,
    "the runner's progress reaches the client as it comes",
  );
  s.close();
  await waitFor('the stream to release the runner', () => !fx.runner.watchers.has(queued.id));

  await fx.catalog.updateRun(queued.id, { state: 'stopped', endedAt: new Date().toISOString() });
  const again = await openStream(`/api/v1/runs/${queued.id}/events`, fx.tokens.viewer, () => false);
  await again.ended;
  assert.match(again.text, /event: end\ndata: \{"id":\d+,"state":"stopped"\}\n\n$/);
  assert.ok(!fx.runner.watchers.has(queued.id));
});

test('event streams are capped: one beyond the cap is 429, and a closed one frees its place', { timeout: 30_000 }, async () => {
  const run = await fx.catalog.createRun({ repo: fx.repo, job: 'web01', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: new Date().toISOString() });
  const path = `/api/v1/runs/${run.id}/events`;
  const first = await openStream(path, fx.tokens.viewer, (t) => t.includes('event: run'));
  const second = await openStream(path, fx.tokens.viewer, (t) => t.includes('event: run'));
  const third = await openStream(path, fx.tokens.viewer, (t) => t.includes('event: run'));
  assert.equal(third.status, 429, third.text);
  assert.equal((JSON.parse(third.text) as { code: string }).code, 'LFB_ERR_RATE_LIMITED');
  const missing = await openStream('/api/v1/runs/999999/events', fx.tokens.viewer, () => false);
  assert.equal(missing.status, 404, 'a stream that cannot open is answered as any request');
  first.close();
  await first.ended;
  // The server sees the socket close a moment after the client: a place comes free then.
  let again = await openStream(path, fx.tokens.viewer, (t) => t.includes('event: run'));
  for (let i = 0; i < 100 && again.status === 429; i++) {
    await new Promise((r) => setTimeout(r, 20));
    again = await openStream(path, fx.tokens.viewer, (t) => t.includes('event: run'));
  }
  assert.equal(again.status, 200, 'a place came free');
  again.close();
  second.close();
  await Promise.all([again.ended, second.ended]);
});

test('closing the server ends the event streams still open', async () => {
  const run = await fx.catalog.createRun({ repo: fx.repo, job: 'web01', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: new Date().toISOString() });
  const s = await openStream(`/api/v1/runs/${run.id}/events`, fx.tokens.viewer, (t) => t.includes('event: run'));
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([fx.api.close().then(() => 'closed'), new Promise((r) => (timer = setTimeout(() => r('still open after 5 s'), 5000)))]);
  clearTimeout(timer);
  assert.equal(closed, 'closed');
  await s.ended;
  assert.ok(!fx.runner.watchers.has(run.id));
});
