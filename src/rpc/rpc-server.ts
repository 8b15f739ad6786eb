import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../core/log.js';
import { batchWritesThisTick } from '../core/batched-writes.js';
import { listenTcp } from '../core/listen.js';
import { DEFAULT_MAX_FRAGMENTS, RecordMarkingError, RecordReader, recordHeader } from './record-marking.js';
import {
  AUTH_BADCRED,
  GARBAGE_ARGS,
  PROC_UNAVAIL,
  PROG_UNAVAIL,
  SUCCESS,
  SYSTEM_ERR,
  acceptedReply,
  authErrorReply,
  decodeCall,
  progMismatchReply,
  rpcMismatchReply,
  type Credentials,
  type RpcCall,
} from './rpc-message.js';
import { XdrError, type XdrReader, type XdrWriter } from './xdr.js';

export interface CallContext {
  readonly cred: Credentials;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

/** A procedure: decodes its arguments from `args` and writes its results to `out`. */
export type Procedure = (args: XdrReader, out: XdrWriter, ctx: CallContext) => void | Promise<void>;

export interface RpcProgram {
  readonly prog: number;
  readonly name: string;
  /** version → procedure number → handler */
  readonly versions: ReadonlyMap<number, ReadonlyMap<number, Procedure>>;
}

export interface RpcServerOptions {
  readonly logger: Logger;
  /** Largest request record accepted (bigger closes the connection). */
  readonly maxRecordBytes?: number;
  /** Requests of one connection in progress at once; beyond it the socket stops being read. */
  readonly maxInFlight?: number;
  /** Connection filter (the --allow list); a refused peer is disconnected at once. */
  readonly accept?: (remoteAddress: string) => boolean;
  /** Credential check per call; false answers AUTH_ERROR (AUTH_BADCRED). */
  readonly authorize?: (cred: Credentials) => boolean;
  /** Open TCP connections per listener; one more is closed at once. Default DEFAULT_MAX_CONNECTIONS. */
  readonly maxConnections?: number;
  /** A connection with no call in progress and no traffic for this long is closed; 0 = never. Default DEFAULT_IDLE_TIMEOUT_MS. */
  readonly idleTimeoutMs?: number;
  /** TCP keepalive's first probe after this much silence; 0 = keepalive off. Default DEFAULT_KEEPALIVE_MS. */
  readonly keepAliveMs?: number;
  /**
   * Request bytes of calls in progress, all connections together; beyond it a
   * connection takes no further record until calls finish, except that one
   * with no call in progress may always start one. Default DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT.
   */
  readonly maxRequestBytesInFlight?: number;
  /** Fragments one request record may have. Default DEFAULT_MAX_FRAGMENTS (record-marking.ts). */
  readonly maxFragmentsPerRecord?: number;
  /** UDP calls in progress at once (all peers); datagrams beyond it are dropped, as UDP allows. Default DEFAULT_MAX_UDP_IN_FLIGHT. */
  readonly maxUdpInFlight?: number;
}

/**
 * Connections per listener. ESXi, Linux and QEMU's libnfs open a few per
 * mounted host; 256 leaves room for many hosts while bounding what a
 * connection flood can hold (each connection may hold up to maxRecordBytes).
 */
export const DEFAULT_MAX_CONNECTIONS = 256;
/**
 * Idle connections are closed after 6 minutes, as Linux's nfsd does with its
 * temporary transports: NFS clients reconnect on their next call, and ESXi's
 * heartbeat (every 12 s) keeps a mounted datastore's connection busy anyway.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 6 * 60_000;
/** Keepalive finds peers that vanished (host power-off, cable pulled) while a call keeps the idle timer off. */
export const DEFAULT_KEEPALIVE_MS = 60_000;
/**
 * 128 MiB of requests in progress per server: 120 NFS WRITEs of 1 MiB at
 * once, far more than a LAN needs to stay busy, while per-connection limits
 * alone would allow maxConnections x maxInFlight x maxRecordBytes (GiBs).
 */
export const DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT = 128 * 1024 * 1024;
/** UDP carries only the portmapper and MOUNT here, both quick: 64 calls at once is plenty, and the client retransmits a dropped one. */
export const DEFAULT_MAX_UDP_IN_FLIGHT = 64;
/** Refused connections are logged at most this often (with a count), so a connection flood cannot flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * ONC RPC over TCP (RFC 5531): record marking, dispatch to registered
 * programs, and the standard error replies. Each connection runs many calls at
 * once (replies are matched by xid, in completion order); when too many are in
 * progress or the peer does not read its replies, the connection stops reading
 * requests until it catches up. A framing error closes that connection only.
 */
export class RpcServer {
  private readonly programs = new Map<number, RpcProgram>();
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  private udp: UdpSocket | undefined;
  private readonly maxRecord: number;
  private readonly maxInFlight: number;
  private readonly maxConnections: number;
  private readonly idleTimeoutMs: number;
  private readonly keepAliveMs: number;
  private readonly maxUdpInFlight: number;
  private readonly maxRequestBytes: number;
  private readonly maxFragments: number;
  /** Request bytes of the calls in progress on all connections. */
  private requestBytesInFlight = 0;
  /** Connections paused for the byte budget: each is pumped again when calls finish. */
  private readonly waitingForBudget = new Set<() => void>();
  private udpInFlight = 0;
  private refusalsUnlogged = 0;
  private refusalLoggedAt = -Infinity;

  constructor(private readonly opts: RpcServerOptions) {
    this.maxRecord = opts.maxRecordBytes ?? 2 * 1024 * 1024;
    this.maxInFlight = opts.maxInFlight ?? 64;
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.keepAliveMs = opts.keepAliveMs ?? DEFAULT_KEEPALIVE_MS;
    this.maxUdpInFlight = opts.maxUdpInFlight ?? DEFAULT_MAX_UDP_IN_FLIGHT;
    this.maxRequestBytes = opts.maxRequestBytesInFlight ?? DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT;
    this.maxFragments = opts.maxFragmentsPerRecord ?? DEFAULT_MAX_FRAGMENTS;
  }

  register(program: RpcProgram): void {
    this.programs.set(program.prog, program);
  }

  async listen(port: number, host: string): Promise<number> {
    this.server = createServer((s) => this.onConnection(s));
    return listenTcp(this.server, port, host, {
      // An accept failure (ENOBUFS, EPERM, EMFILE...) concerns one connection; the listener stays up.
      onError: (err) => this.opts.logger.error('rpc: accepting a connection failed', { port, error: err.message, code: (err as NodeJS.ErrnoException).code }),
    });
  }

  /**
   * Also serves UDP on the same port: one call per datagram, no record
   * marking. Some clients (rpcinfo -p, older mounters) ask the portmapper and
   * MOUNT over UDP first.
   */
  async listenUdp(port: number, host: string): Promise<void> {
    const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    this.udp = udp;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (err) => this.opts.logger.warn('rpc: udp error', { error: err.message }));
    let open = true;
    udp.once('close', () => (open = false));
    udp.on('message', (msg, rinfo) => {
      if (this.opts.accept && !this.opts.accept(rinfo.address)) return;
      if (msg.length > this.maxRecord) return;
      // Dropped, not queued: a flood must not pile up pending calls, and the client retransmits.
      if (this.udpInFlight >= this.maxUdpInFlight) return;
      this.udpInFlight += 1;
      void this.handle(msg, { remoteAddress: rinfo.address, remotePort: rinfo.port }).then((reply) => {
        this.udpInFlight -= 1;
        // A reply that cannot be sent (socket closed meanwhile, too big for a datagram) is dropped.
        if (reply && open) udp.send(reply.toBuffer(), rinfo.port, rinfo.address, () => undefined);
        // toBuffer() copied the message: what it referenced may go back now.
        reply?.sent();
      });
    });
  }

  /** Stops listening and drops every connection; calling it again does nothing. */
  async close(): Promise<void> {
    const udp = this.udp;
    this.udp = undefined;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(socket: Socket): void {
    const remoteAddress = socket.remoteAddress ?? '';
    if (this.opts.accept && !this.opts.accept(remoteAddress)) {
      this.refuse(socket, 'refused by the allow list', remoteAddress);
      return;
    }
    if (this.sockets.size >= this.maxConnections) {
      this.refuse(socket, `over the limit of ${this.maxConnections} connections`, remoteAddress);
      return;
    }
    this.sockets.add(socket);
    socket.setNoDelay(true);
    if (this.keepAliveMs > 0) socket.setKeepAlive(true, this.keepAliveMs);
    const reader = new RecordReader(this.maxRecord, { maxFragments: this.maxFragments });
    const peer = { remoteAddress, remotePort: socket.remotePort ?? 0 };
    const who = { protocol: this.protocolName(), client: `${remoteAddress}:${peer.remotePort}` };
    this.opts.logger.debug('rpc: connection opened', who);
    const openedAt = performance.now();
    let calls = 0;
    let inFlight = 0;
    let waitingForDrain = false;
    const overBudget = (): boolean => inFlight > 0 && this.requestBytesInFlight >= this.maxRequestBytes;
    const mayStart = (): boolean => inFlight < this.maxInFlight && !waitingForDrain && !overBudget();
    /**
     * Dispatches received records while a call may start, then reads more
     * only if every received record is dispatched: records beyond the limits
     * wait in the reader, and the paused socket bounds how many bytes that is.
     */
    const pump = (): void => {
      this.waitingForBudget.delete(pump);
      try {
        while (!socket.destroyed && mayStart()) {
          const record = reader.next();
          if (record === undefined) break;
          dispatch(record);
        }
      } catch (err) {
        this.opts.logger.warn('rpc: closing connection', { ...who, reason: err instanceof RecordMarkingError ? err.message : String(err) });
        socket.destroy();
        return;
      }
      if (socket.destroyed) return;
      const stop = !mayStart();
      if (stop && overBudget()) this.waitingForBudget.add(pump);
      if (stop && !socket.isPaused()) socket.pause();
      else if (!stop && socket.isPaused()) socket.resume();
    };
    const dispatch = (record: Buffer): void => {
      calls += 1;
      inFlight += 1;
      this.requestBytesInFlight += record.length;
      void this.handle(record, peer).then((reply) => {
        inFlight -= 1;
        this.requestBytesInFlight -= record.length;
        if (reply) send(reply);
        else socket.destroy(); // not even an xid: the stream cannot be trusted
        pump();
        this.wakeBudgetWaiters();
      });
    };
    const send = (w: XdrWriter): void => {
      if (socket.destroyed) return w.sent();
      const chunks = w.toChunks();
      // The tick's replies leave together; `ok` then weighs the whole batch against the
      // high-water mark, so a large batch pauses new calls until the 'drain' after its flush.
      batchWritesThisTick(socket);
      let ok = socket.write(recordHeader(w.length), chunks.length === 0 ? () => w.sent() : undefined);
      // The last chunk's callback runs once the kernel has every chunk, or with an error once the socket is gone.
      chunks.forEach((c, i) => (ok = socket.write(c, i === chunks.length - 1 ? () => w.sent() : undefined)));
      if (!ok && !waitingForDrain) {
        waitingForDrain = true;
        socket.once('drain', () => {
          waitingForDrain = false;
          pump();
        });
      }
    };
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      pump();
    });
    if (this.idleTimeoutMs > 0) {
      // Fires after idleTimeoutMs without reads or writes; a reply written later re-arms it.
      socket.setTimeout(this.idleTimeoutMs);
      socket.on('timeout', () => {
        if (inFlight > 0) return;
        this.opts.logger.debug('rpc: closing idle connection', who);
        socket.destroy();
      });
    }
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.waitingForBudget.delete(pump);
      this.opts.logger.debug('rpc: connection closed', { ...who, calls, afterMs: Math.round(performance.now() - openedAt) });
    });
  }

  /** What the log calls this listener: the names of its programs (nfs, mount, portmap…). */
  private protocolName(): string {
    return [...this.programs.values()].map((p) => p.name).join('+') || 'rpc';
  }

  /** Lets connections paused for the byte budget take records again, while it lasts. */
  private wakeBudgetWaiters(): void {
    for (const pump of [...this.waitingForBudget]) {
      if (this.requestBytesInFlight >= this.maxRequestBytes) return;
      pump();
    }
  }

  /** Closes a connection at once; the log says so at most every REFUSAL_LOG_INTERVAL_MS. */
  private refuse(socket: Socket, reason: string, remoteAddress: string): void {
    socket.destroy();
    this.refusalsUnlogged += 1;
    const now = performance.now();
    if (now - this.refusalLoggedAt < REFUSAL_LOG_INTERVAL_MS) return;
    this.opts.logger.warn(`rpc: connection ${reason}`, { remoteAddress, refusedSinceLastReport: this.refusalsUnlogged });
    this.refusalsUnlogged = 0;
    this.refusalLoggedAt = now;
  }

  /** Never rejects: every failure becomes the reply RFC 5531 prescribes, or undefined for an unusable record. */
  private async handle(record: Buffer, peer: { remoteAddress: string; remotePort: number }): Promise<XdrWriter | undefined> {
    let call: RpcCall;
    try {
      call = decodeCall(record);
    } catch {
      // A header we cannot read: answer GARBAGE_ARGS if at least the xid and CALL type are there.
      if (record.length >= 8 && record.readUInt32BE(4) === 0) return acceptedReply(record.readUInt32BE(0), GARBAGE_ARGS);
      return undefined;
    }
    if (call.rpcvers !== 2) return rpcMismatchReply(call.xid);
    const program = this.programs.get(call.prog);
    if (!program) return acceptedReply(call.xid, PROG_UNAVAIL);
    const version = program.versions.get(call.vers);
    if (!version) {
      const vs = [...program.versions.keys()];
      return progMismatchReply(call.xid, Math.min(...vs), Math.max(...vs));
    }
    const proc = version.get(call.proc);
    if (!proc) return acceptedReply(call.xid, PROC_UNAVAIL);
    if (this.opts.authorize && !this.opts.authorize(call.cred)) return authErrorReply(call.xid, AUTH_BADCRED);
    const out = acceptedReply(call.xid, SUCCESS);
    try {
      await proc(call.args, out, { cred: call.cred, ...peer });
      return out;
    } catch (err) {
      // This reply is dropped for another: bytes it was lent go back.
      out.sent();
      if (err instanceof XdrError) return acceptedReply(call.xid, GARBAGE_ARGS);
      this.opts.logger.error('rpc: procedure failed', {
        client: `${peer.remoteAddress}:${peer.remotePort}`,
        prog: program.name,
        vers: call.vers,
        proc: call.proc,
        error: err instanceof Error ? err.message : String(err),
      });
      return acceptedReply(call.xid, SYSTEM_ERR);
    }
  }
}
