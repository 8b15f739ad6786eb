import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../core/log.js';
import { listenTcp } from '../core/listen.js';
import type { NbdExports } from './export.js';
import { ByteBudget } from './nbd-budget.js';
import { NbdProtocolError } from './nbd-errors.js';
import { negotiate } from './nbd-handshake.js';
import { Transmission } from './nbd-transmission.js';
import { SocketReader } from './socket-reader.js';
import * as W from './wire.js';

export interface NbdServerOptions {
  readonly exports: NbdExports;
  readonly logger: Logger;
  readonly accept?: (remoteAddress: string) => boolean;
  /** Requests of one connection in flight at once (received, reply not yet taken by the kernel). */
  readonly maxInFlight?: number;
  /** Payload bytes of one connection in flight at once (READ data not yet taken by the kernel, WRITE data not yet written). */
  readonly maxInFlightBytes?: number;
  /** Payload bytes in flight over all connections. */
  readonly maxInFlightBytesTotal?: number;
}

export const NBD_SERVER_DEFAULTS = {
  maxInFlight: 64,
  maxInFlightBytes: 64 * 1024 * 1024,
  maxInFlightBytesTotal: 256 * 1024 * 1024,
} as const;

/** Request bytes read from a socket ahead of the server: more waits in the kernel, where TCP flow control holds the client. */
const READ_AHEAD = 256 * 1024;
/** How long a client that was told goodbye may take to read its last replies. */
const LINGER_MS = 10_000;

/**
 * An NBD server (fixed newstyle handshake, simple and structured replies,
 * base:allocation) over NbdExports. A bad request gets an error reply, a
 * broken frame closes that connection only.
 */
export class NbdServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly budget: ByteBudget;

  constructor(private readonly opts: NbdServerOptions) {
    // The server-wide budget is never smaller than one largest request, which must always be able to run.
    this.budget = new ByteBudget(Math.max(opts.maxInFlightBytesTotal ?? NBD_SERVER_DEFAULTS.maxInFlightBytesTotal, W.MAX_PAYLOAD));
  }

  async listen(port: number, host: string): Promise<number> {
    this.server = createServer((s) => this.onConnection(s, true));
    return listenTcp(this.server, port, host);
  }

  /** Listens on a unix socket (nbd+unix:///export?socket=path): local clients, and tests that need no TCP port. */
  async listenUnix(path: string): Promise<void> {
    // A unix socket's peers are local users the socket file's mode admits: no address to check.
    const server = createServer((s) => this.onConnection(s, false));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(socket: Socket, checkAddress: boolean): void {
    if (checkAddress && this.opts.accept && !this.opts.accept(socket.remoteAddress ?? '')) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const reader = new SocketReader(socket, READ_AHEAD);
    void (async () => {
      let clean = false;
      try {
        const session = await negotiate(socket, reader, this.opts.exports);
        if (session) {
          const limits = {
            maxRequests: this.opts.maxInFlight ?? NBD_SERVER_DEFAULTS.maxInFlight,
            maxBytes: this.opts.maxInFlightBytes ?? NBD_SERVER_DEFAULTS.maxInFlightBytes,
          };
          await new Transmission(socket, reader, session, limits, this.budget, this.opts.logger).serve();
        }
        clean = true;
      } catch (err) {
        if (err instanceof NbdProtocolError) this.opts.logger.warn('nbd: closing connection', { reason: err.message });
      } finally {
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
