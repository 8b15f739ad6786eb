/**
 * The screen of a VM Lifeboat booted, in the browser: GET
 * /api/v1/sessions/{name}/screen upgraded to a WebSocket that carries the
 * VM's VNC (RFB) bytes both ways between the browser and QEMU's unix socket
 * in the session folder. Nothing else: no websockify, no TCP VNC port, no
 * parsing of RFB; noVNC in the browser speaks RFB with QEMU directly.
 *
 * Input reaches the VM, so the route needs the operator role. Browsers send
 * no custom headers (no X-CSRF-Token) on a WebSocket upgrade, and SameSite
 * cookies do not stop a page of another origin on the same site, so a
 * cookie's upgrade must also come from the server's own origin.
 *
 * Bounded: while the browser reads slower than the VM draws, the WebSocket's
 * buffered amount rises and the unix socket is paused (QEMU then stops
 * sending); while QEMU reads slower than the browser sends, the WebSocket is
 * paused. At most MAX_VIEWERS connections per session; each is closed when
 * the session stops or its VM exits.
 */
import { connect, type Socket } from 'node:net';
import websocket from '@fastify/websocket';
import type { WebSocket } from 'ws';
import type { FastifyRequest } from 'fastify';
import { LifeboatError } from '../../core/errors.js';
import type { SessionInfo } from '../../recovery/index.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES, SessionParams, SessionQuery } from './schemas.js';
import { findSession } from './sessions.js';

/** Screens open at once on one session (a person, a second tab, a colleague). */
export const MAX_VIEWERS = 4;
/** Pause the VM's side above this many bytes waiting for the browser; resume below LOW_WATER. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** Largest message the browser may send: RFB input and clipboard, never bulk data. */
const MAX_MESSAGE = 256 * 1024;
/** How often an open screen checks that its session and VM still run. */
const WATCH_MS = 1000;

/** WebSocket close codes: 1000 normal (the VM or session ended), 1011 the bridge failed, 1013 too many viewers. */
const CLOSE_NORMAL = 1000;
const CLOSE_ERROR = 1011;
const CLOSE_BUSY = 1013;

/** The VNC socket of a session's running VM, or LFB_ERR_NO_SCREEN saying why there is none. */
export function screenSocket(info: SessionInfo): string {
  const vm = info.vm;
  if (vm === undefined) throw new LifeboatError('LFB_ERR_NO_SCREEN', `session "${info.name}" has no VM Lifeboat booted (start it with boot to see its screen)`);
  if (vm.state !== 'running') throw new LifeboatError('LFB_ERR_NO_SCREEN', `the VM of session "${info.name}" is not running (${vm.exit ?? 'exited'})`);
  if (vm.vncSocket === undefined)
    throw new LifeboatError(
      'LFB_ERR_NO_SCREEN',
      `the VM of session "${info.name}" was booted by an older Lifeboat without a screen; stop the session and start it again for one`,
    );
  return vm.vncSocket;
}

/** The origin a browser page of this server has: its scheme and the Host it was reached by. */
function ownOrigin(request: FastifyRequest, https: boolean): string | undefined {
  const host = request.headers.host;
  return host === undefined ? undefined : `${https ? 'https' : 'http'}://${host}`;
}

type Params = { name: string };
type Query = { repo?: string };

export async function screenRoutes(app: ApiServer, ctx: ApiContext): Promise<void> {
  await app.register(websocket, { options: { maxPayload: MAX_MESSAGE } });
  const viewers = new Map<string, Set<WebSocket>>();
  const https = ctx.deps.https !== undefined;
  const keyOf = (repo: string, name: string): string => `${repo}\u0000${name}`;
  // An upgrade refused before @fastify/websocket's own onRequest hook ran (the API's authentication runs first) would
  // leave its socket open after the refusal: nothing else may come on that connection, so it is closed here.
  app.addHook('onResponse', async (request) => {
    if (request.headers.upgrade !== undefined && !request.raw.socket.destroyed) request.raw.socket.destroy();
  });

  /** Refusals are answered as HTTP errors before the upgrade: {code, message} like every route. */
  const admit = async (request: FastifyRequest<{ Params: Params; Querystring: Query }>): Promise<void> => {
    if (request.principal?.via === 'cookie') {
      const origin = request.headers.origin;
      if (origin === undefined || origin !== ownOrigin(request, https))
        throw new LifeboatError(
          'LFB_ERR_FORBIDDEN',
          `a screen opened with a session cookie must come from this server's own pages (Origin ${origin ?? 'missing'})`,
        );
    }
    const f = findSession(ctx, request.params.name, request.query.repo);
    screenSocket(f.info);
    if ((viewers.get(keyOf(f.repo, f.info.name))?.size ?? 0) >= MAX_VIEWERS)
      throw new LifeboatError('LFB_ERR_SCREEN_BUSY', `session "${f.info.name}" already has ${MAX_VIEWERS} screens open`);
  };

  const bridge = (ws: WebSocket, request: FastifyRequest<{ Params: Params; Querystring: Query }>): void => {
    let f: ReturnType<typeof findSession>;
    let path: string;
    try {
      f = findSession(ctx, request.params.name, request.query.repo);
      path = screenSocket(f.info);
    } catch (err) {
      // The session stopped between the checks and the upgrade.
      ws.close(CLOSE_NORMAL, err instanceof LifeboatError ? err.code : 'LFB_ERR_NO_SCREEN');
      return;
    }
    const key = keyOf(f.repo, f.info.name);
    const open = viewers.get(key) ?? new Set<WebSocket>();
    if (open.size >= MAX_VIEWERS) {
      ws.close(CLOSE_BUSY, 'LFB_ERR_SCREEN_BUSY');
      return;
    }
    open.add(ws);
    viewers.set(key, open);
    const vmPid = f.info.vm!.pid;
    const name = f.info.name;
    const recovery = f.recovery;
    ws.binaryType = 'nodebuffer';

    const vnc: Socket = connect(path);
    let ended = false;
    const end = (code: number, reason: string): void => {
      if (ended) return;
      ended = true;
      clearInterval(watcher);
      open.delete(ws);
      if (open.size === 0) viewers.delete(key);
      vnc.destroy();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    };
    // The same session with the same VM, still running; a session stopped and started again under its name is another VM.
    const watcher = setInterval(() => {
      const info = recovery.info(name);
      if (info === undefined) end(CLOSE_NORMAL, 'the session stopped');
      else if (info.vm?.pid !== vmPid || info.vm.state !== 'running') end(CLOSE_NORMAL, 'the VM stopped');
    }, WATCH_MS);
    watcher.unref();

    vnc.on('data', (chunk: Buffer) => {
      ws.send(chunk, { binary: true }, () => {
        if (vnc.isPaused() && ws.bufferedAmount <= LOW_WATER) vnc.resume();
      });
      if (ws.bufferedAmount > HIGH_WATER) vnc.pause();
    });
    vnc.on('end', () => end(CLOSE_NORMAL, 'the VM closed its screen'));
    vnc.on('close', () => end(CLOSE_NORMAL, 'the VM closed its screen'));
    vnc.on('error', (err) => {
      ctx.deps.logger.warn('http: screen: the VM socket failed', { session: name, error: err.message });
      end(CLOSE_ERROR, 'the VM screen is not reachable');
    });

    ws.on('message', (data: Buffer) => {
      if (!vnc.write(data)) {
        ws.pause();
        vnc.once('drain', () => ws.resume());
      }
    });
    ws.on('close', () => end(CLOSE_NORMAL, ''));
    ws.on('error', () => end(CLOSE_ERROR, ''));
  };

  app.route<{ Params: Params; Querystring: Query }>({
    method: 'GET',
    url: `${API_PREFIX}/sessions/:name/screen`,
    // Keys and clicks reach the VM: an operator's, like starting and stopping it.
    config: { role: 'operator' },
    schema: {
      summary:
        "The screen of the session's booted VM: a WebSocket (send Upgrade: websocket) carrying VNC (RFB 3.8) bytes both ways as binary messages. With a session cookie the Origin must be this server's.",
      tags: ['sessions'],
      params: SessionParams,
      querystring: SessionQuery,
      response: { 101: { type: 'null', description: 'switching to the WebSocket protocol' }, ...ERROR_RESPONSES },
    },
    preHandler: admit,
    // A plain GET (no upgrade) gets an error in the API's shape.
    handler: async (_request, reply) =>
      reply
        .code(426)
        .header('upgrade', 'websocket')
        .type('application/json')
        .send({ code: 'LFB_ERR_INVALID_ARGUMENT', message: 'this route is a WebSocket: send the request with Upgrade: websocket' }),
    wsHandler: bridge,
  });
}
