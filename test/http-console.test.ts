/**
 * The console's files and the security headers, in process (fastify's
 * inject: no port, no browser, no root): every answer carries the headers
 * (the console's files, the API's answers and refusals, 404s, an event
 * stream), HSTS only over HTTPS, hashed files cached for good and sent
 * compressed, and the OpenAPI document lists no file.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { selfSignedCertificate } from '../src/auth/index.js';
import { systemClock } from '../src/core/clock.js';
import { CONTENT_SECURITY_POLICY } from '../src/service/http/console.js';
import { tempDir } from './helpers.js';
import { makeFixture, type Fixture, createWeb01 } from './http-api-fixture.js';

let fx: Fixture;
let tlsFx: Fixture;
let certDir: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  fx = await makeFixture();
  certDir = await tempDir('lifeboat-console-tls-');
  const tls = await selfSignedCertificate(join(certDir.dir, 'state'), { clock: systemClock });
  tlsFx = await makeFixture({ https: { cert: tls.cert, key: tls.key } });
});
after(async () => {
  await fx?.close();
  await tlsFx?.close();
  await certDir?.cleanup();
});

function assertHeaders(res: LightMyRequestResponse, what: string, https = false): void {
  const h = res.headers;
  assert.equal(h['content-security-policy'], CONTENT_SECURITY_POLICY, what);
  assert.match(CONTENT_SECURITY_POLICY, /script-src 'self';/);
  assert.match(CONTENT_SECURITY_POLICY, /frame-ancestors 'none'/);
  assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-inline|unsafe-eval/);
  assert.equal(h['x-frame-options'], 'DENY', what);
  assert.equal(h['x-content-type-options'], 'nosniff', what);
  assert.equal(h['referrer-policy'], 'no-referrer', what);
  assert.equal(h['cross-origin-opener-policy'], 'same-origin', what);
  if (https) assert.equal(h['strict-transport-security'], 'max-age=31536000', what);
  else assert.equal(h['strict-transport-security'], undefined, `${what}: no HSTS over plain HTTP`);
}

test('the console is served at / with the security headers; its hashed files are cached for good and sent compressed', async () => {
  const index = await fx.api.inject({ method: 'GET', url: '/' });
  assert.equal(index.statusCode, 200);
  assert.match(String(index.headers['content-type']), /^text\/html/);
  assert.equal(index.headers['cache-control'], 'no-cache');
  assertHeaders(index, 'GET /');
  // No inline script or style: the page's one script and one style sheet are files.
  assert.doesNotMatch(index.body, /<script(?![^>]*\bsrc=)[^>]*>|<style|style="/);
  const script = /<script type="module" src="(\/main-[A-Z0-9]{8}\.js)"/.exec(index.body)?.[1];
  const sheet = /<link rel="stylesheet" href="(\/style-[A-Z0-9]{8}\.css)"/.exec(index.body)?.[1];
  assert.ok(script && sheet, index.body);

  const br = await fx.api.inject({ method: 'GET', url: script, headers: { 'accept-encoding': 'br, gzip' } });
  assert.equal(br.statusCode, 200);
  assert.equal(br.headers['content-encoding'], 'br');
  assert.match(String(br.headers['content-type']), /javascript/);
  assert.equal(br.headers['cache-control'], 'public, max-age=31536000, immutable');
  assertHeaders(br, script);
  const plain = await fx.api.inject({ method: 'GET', url: sheet });
  assert.equal(plain.statusCode, 200);
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.match(plain.body, /prefers-color-scheme/);

  const missing = await fx.api.inject({ method: 'GET', url: '/no-such-file.js' });
  assert.equal(missing.statusCode, 404);
  assertHeaders(missing, 'a missing file');
});

test('every answer of the API carries the headers: a refusal, a 404, JSON, an event stream', async () => {
  const refused = await fx.api.inject({ method: 'GET', url: '/api/v1/me' });
  assert.equal(refused.statusCode, 401);
  assertHeaders(refused, 'GET /me without a login');
  const noRoute = await fx.api.inject({ method: 'GET', url: '/api/v1/no-such-route' });
  assert.equal(noRoute.statusCode, 404);
  assert.equal((JSON.parse(noRoute.body) as { code: string }).code, 'LFB_ERR_ROUTE_NOT_FOUND', 'an unknown API path is the API 404, not a file');
  assertHeaders(noRoute, 'an unknown API path');
  const admin = { authorization: `Bearer ${fx.tokens.admin}` };
  const me = await fx.api.inject({ method: 'GET', url: '/api/v1/me', headers: admin });
  assert.equal(me.statusCode, 200);
  assert.equal(me.headers['cache-control'], 'no-store');
  assertHeaders(me, 'GET /me');

  // An event stream writes its own head (the reply is hijacked): the headers are on it too.
  await createWeb01(fx);
  const run = await fx.api.inject({ method: 'POST', url: `/api/v1/repositories/${fx.repoName}/jobs/web01/run`, headers: admin });
  assert.equal(run.statusCode, 202, run.body);
  const events = await fx.api.inject({ method: 'GET', url: `/api/v1/runs/${(JSON.parse(run.body) as { id: number }).id}/events`, headers: admin });
  assert.equal(events.statusCode, 200);
  assert.match(String(events.headers['content-type']), /^text\/event-stream/);
  assert.match(events.body, /event: end/);
  assertHeaders(events, 'an event stream');
});

test('over HTTPS every answer also has Strict-Transport-Security', async () => {
  assertHeaders(await tlsFx.api.inject({ method: 'GET', url: '/' }), 'GET / over HTTPS', true);
  assertHeaders(await tlsFx.api.inject({ method: 'GET', url: '/api/v1/me' }), 'a refusal over HTTPS', true);
});

test('the OpenAPI document lists the API alone, not the console files', async () => {
  const doc = JSON.parse((await fx.api.inject({ method: 'GET', url: '/api/v1/openapi.json' })).body) as { paths: Record<string, unknown> };
  const outside = Object.keys(doc.paths).filter((p) => !p.startsWith('/api/v1/'));
  assert.deepEqual(outside, []);
  assert.ok(Object.keys(doc.paths).length > 10);
});
