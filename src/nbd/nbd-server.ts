import { createServer, type Server, type Socket } from 'node:net';
import { withFields, type Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { listenTcp } from '../core/listen.js';
import type { NbdExports } from './export.js';
import { ByteBudget } from './nbd-budget.js';
import { NbdProtocolError } from './nbd-errors.js';
import { negotiate } from './nbd-handshake.js';
import { Transmission } from './nbd-transmission.js';
import { ConnectionClosed, SocketReader } from './socket-reader.js';
import * as W from './wire.js';

export interface NbdServerOptions {
  readonly exports: NbdExports;
  readonly logger: Logger;
  /** Where connection times come from (default the system's). */
  readonly clock?: Clock;
  /** Checked at accept, before the greeting (TCP listeners only). */
  readonly accept?: (remoteAddress: string) => boolean;
  /** Connections open at once, handshaking or not; more are closed at accept. */
  readonly maxConnections?: number;
  /** A client must have picked an export this long after connecting. */
  readonly handshakeTimeoutMs?: number;
  /** A connection with no request for this long is closed; 0: never (a booted VM may sit idle for hours). */
  readonly idleTimeoutMs?: number;
  /** A connection whose replies the client has not read for this long is closed, giving back its bytes in flight. */
  readonly replyStallTimeoutMs?: number;
  /** TCP keepalive probes after this much silence, so a client whose host vanished is found out; 0: off. */
  readonly keepAliveMs?: number;
  /** Requests of one connection in flight at once (received, reply not yet taken by the kernel). */
  readonly maxInFlight?: number;
  /** Payload bytes of one connection in flight at once (READ data not yet taken by the kernel, WRITE data not yet written). */
  readonly maxInFlightBytes?: number;
  /** Payload bytes in flight over all connections. */
  readonly maxInFlightBytesTotal?: number;
}

export const NBD_SERVER_DEFAULTS = {
  maxConnections: 128,
  handshakeTimeoutMs: 30_000,
  idleTimeoutMs: 0,
  replyStallTimeoutMs: 120_000,
  keepAliveMs: 60_000,
  maxInFlight: 64,
  maxInFlightBytes: 64 * 1024 * 1024,
  maxInFlightBytesTotal: 256 * 1024 * 1024,
} as const;

/** A connection that finished its handshake: which export it uses, from where, since when. */
export interface AttachedClient {
  readonly export: string;
  /** address:port */
  readonly client: string;
  readonly since: Date;
}

type Settings = { -readonly [K in keyof typeof NBD_SERVER_DEFAULTS]: number };

/** Request bytes read from a socket ahead of the server: more waits in the kernel, where TCP flow control holds the client. */
const READ_AHEAD = 256 * 1024;
/** How long a client that was told goodbye may take to read its last replies. */
const LINGER_MS = 10_000;
/** The same complaint (refused connections, accept errors) is logged at most this often. */
const COMPLAINT_INTERVAL_MS = 10_000;

/**
 * An NBD server (fixed newstyle handshake, simple and structured replies,
 * base:allocation) over NbdExports. A bad request gets an error reply, a
 * broken frame closes that connection only.
 */
export class NbdServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly attached = new Map<Socket, AttachedClient>();
  private readonly settings: Settings;
  private readonly budget: ByteBudget;
  private readonly refusals: Complaint;
  private readonly acceptErrors: Complaint;

  constructor(private readonly opts: NbdServerOptions) {
    const s = { ...NBD_SERVER_DEFAULTS } as Settings;
    for (const k of Object.keys(s) as (keyof Settings)[]) s[k] = opts[k] ?? s[k];
    this.settings = s;
    // The server-wide budget is never smaller than one largest request, which must always be able to run.
    this.budget = new ByteBudget(Math.max(s.maxInFlightBytesTotal, W.MAX_PAYLOAD));
    this.refusals = new Complaint((n) => opts.logger.warn(`nbd: refused ${n} connection(s) over the cap of ${s.maxConnections} connections`));
    this.acceptErrors = new Complaint((n, err) => opts.logger.error(`nbd: accepting a connection failed ${n} time(s): ${describe(err)}`));
  }

  async listen(port: number, host: string): Promise<number> {
    const server = this.createListener(true);
    const bound = await listenTcp(server, port, host);
    this.watch(server);
    return bound;
  }

  /** Listens on a unix socket (nbd+unix:///export?socket=path): local clients, and tests that need no TCP port. */
  async listenUnix(path: string): Promise<void> {
    // A unix socket's peers are local users the socket file's mode admits: no address to check.
    const server = this.createListener(false);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.watch(server);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** The connections serving an export, e.g. for `instant migrate --finish`, which must not run under a writer. */
  clients(): AttachedClient[] {
    return [...this.attached.values()];
  }

  /**
   * Closes every connection whose export `match` picks. Requests already
   * handed to the export finish there; their replies are lost with the
   * connection, so the client never sees them acknowledged.
   */
  async disconnect(match: (exportName: string) => boolean): Promise<number> {
    const gone: Promise<void>[] = [];
    for (const [socket, c] of this.attached) {
      if (!match(c.export)) continue;
      this.opts.logger.info('nbd: closing a connection on request', { export: c.export, client: c.client });
      gone.push(new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r()))));
      socket.destroy();
    }
    await Promise.all(gone);
    return gone.length;
  }

  private createListener(checkAddress: boolean): Server {
    this.server = createServer((s) => this.onConnection(s, checkAddress));
    return this.server;
  }

  /** Once listening, an error on the listener is a failed accept (EMFILE, ENOBUFS...): logged, never the end of the process. */
  private watch(server: Server): void {
    server.on('error', (err) => this.acceptErrors.add(err));
  }

  private onConnection(socket: Socket, checkAddress: boolean): void {
    socket.on('error', () => undefined);
    if (checkAddress && this.opts.accept && !this.opts.accept(socket.remoteAddress ?? '')) {
      socket.destroy();
      return;
    }
    if (this.sockets.size >= this.settings.maxConnections) {
      this.refusals.add();
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const client = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    // Every line about this connection names its client, and once it chose an export, the session and disk too.
    let log = withFields(this.opts.logger, { client });
    log.debug('nbd: connection opened');
    const opened = performance.now();
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.attached.delete(socket);
      log.debug('nbd: connection closed', { afterMs: Math.round(performance.now() - opened) });
    });
    socket.setNoDelay(true);
    if (this.settings.keepAliveMs > 0) socket.setKeepAlive(true, this.settings.keepAliveMs);
    const handshakeDeadline = setTimeout(() => {
      log.info('nbd: closing a connection that did not finish its handshake', { afterMs: this.settings.handshakeTimeoutMs });
      socket.destroy();
    }, this.settings.handshakeTimeoutMs);
    const reader = new SocketReader(socket, READ_AHEAD);
    void (async () => {
      let clean = false;
      try {
        let chosen = '';
        const exports = this.opts.exports;
        // The export a client ends the handshake with is the last one it opened (GO or EXPORT_NAME open it last).
        const recording: NbdExports = {
          list: () => exports.list(),
          open: (name) => {
            const device = exports.open(name);
            if (device) chosen = name;
            else log.debug('nbd: no such export', { export: name.slice(0, 200) });
            return device;
          },
        };
        const session = await negotiate(socket, reader, recording);
        clearTimeout(handshakeDeadline);
        if (session) {
          log = withFields(this.opts.logger, { ...exportFields(chosen), client });
          log.info('nbd: client attached');
          if (!socket.destroyed) this.attached.set(socket, { export: chosen, client, since: (this.opts.clock ?? systemClock).now() });
          const s = this.settings;
          const limits = {
            maxRequests: s.maxInFlight,
            maxBytes: s.maxInFlightBytes,
            idleTimeoutMs: s.idleTimeoutMs,
            replyStallTimeoutMs: s.replyStallTimeoutMs,
          };
          await new Transmission(socket, reader, session, limits, this.budget, log).serve();
        }
        clean = true;
      } catch (err) {
        if (err instanceof NbdProtocolError) log.warn('nbd: closing connection', { reason: err.message });
        else if (!(err instanceof ConnectionClosed)) log.error(`nbd: closing connection after an unexpected error: ${describe(err)}`);
      } finally {
        clearTimeout(handshakeDeadline);
        if (clean) goodbye(socket);
        else socket.destroy();
      }
    })();
  }
}

/** Ends a connection after its last replies are sent; a client that does not read them is cut off after LINGER_MS. */
function goodbye(socket: Socket): void {
  socket.end();
  const t = setTimeout(() => socket.destroy(), LINGER_MS);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

/** Counts a repeated event and reports it at most once per COMPLAINT_INTERVAL_MS, so a flood cannot flood the log. */
class Complaint {
  private count = 0;
  private last: unknown;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly report: (count: number, last: unknown) => void) {}

  add(detail?: unknown): void {
    this.count += 1;
    this.last = detail;
    if (this.timer) return;
    this.flush();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.count > 0) this.flush();
    }, COMPLAINT_INTERVAL_MS);
    this.timer.unref();
  }

  private flush(): void {
    const n = this.count;
    this.count = 0;
    this.report(n, this.last);
  }
}

/** Export names are `<session>/<disk>` (recovery/); any other name is logged as it is. */
function exportFields(name: string): Record<string, string> {
  const slash = name.lastIndexOf('/');
  return slash > 0 ? { export: name, session: name.slice(0, slash), disk: name.slice(slash + 1) } : { export: name };
}

function describe(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${code} ${message}` : message;
}
