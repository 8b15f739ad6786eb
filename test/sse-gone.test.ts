/**
 * An event stream whose client went away before the stream started (a tab
 * closed while the request was authenticated, or while the run was read from
 * the catalog) is closed at once: its cleanups run and it no longer counts
 * against the streams' cap. Before, it stayed open with its keepalive and its
 * catalog polling for as long as the server ran. In process, fastify on
 * loopback; no root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import Fastify from 'fastify';
import { EventStreams, type EventStream } from '../src/service/http/sse.js';
import { until } from './helpers.js';

test('an event stream whose client left before it started closes at once and frees its place', async () => {
  const streams = new EventStreams(1);
  let release: () => void = () => undefined;
  const ready = new Promise<void>((r) => (release = r));
  let started: EventStream | undefined;
  let cleaned = false;
  const app = Fastify();
  app.get('/events', async (req, reply) => {
    // What the API does before it starts a stream: authentication, reading the run.
    await ready;
    started = streams.start(req, reply, 60_000);
    started.onClose(() => (cleaned = true));
  });
  app.get('/again', async (req, reply) => {
    try {
      streams.start(req, reply, 60_000).end();
    } catch {
      return reply.code(429).send('no place');
    }
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const port = (app.server.address() as { port: number }).port;
    const req = request({ host: '127.0.0.1', port, path: '/events' });
    req.on('error', () => undefined);
    req.end();
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    await new Promise((r) => setTimeout(r, 200));
    release();
    const stream = await until('the stream to start', async () => started);
    await until('the stream to close', async () => (stream.closed ? true : undefined), 2000);
    assert.ok(cleaned, "the stream's cleanups ran");
    // The cap is one stream: the place the gone client took is free again.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const again = request({ host: '127.0.0.1', port, path: '/again' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      again.on('error', reject);
      again.end();
    });
    assert.equal(status, 200);
  } finally {
    streams.closeAll();
    await app.close();
  }
});
