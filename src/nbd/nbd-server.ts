import { createServer, type Server, type Socket } from 'node:net';
import { isLifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { listenTcp } from '../core/listen.js';
import type { NbdDevice, NbdExports } from './export.js';
import { SocketReader } from './socket-reader.js';
import * as W from './wire.js';

export interface NbdServerOptions {
  readonly exports: NbdExports;
  readonly logger: Logger;
  readonly accept?: (remoteAddress: string) => boolean;
  /** Requests of one connection in progress at once. */
  readonly maxInFlight?: number;
}

const TRANSMISSION_FLAGS =
  W.NBD_FLAG_HAS_FLAGS |
  W.NBD_FLAG_SEND_FLUSH |
  W.NBD_FLAG_SEND_FUA |
  W.NBD_FLAG_SEND_TRIM |
  W.NBD_FLAG_SEND_WRITE_ZEROES |
  W.NBD_FLAG_SEND_CACHE |
  // Every connection to an export shares its one overlay, so flushes are seen by all.
  W.NBD_FLAG_CAN_MULTI_CONN;
const CONTEXT_ID = 1;

interface Session {
  device: NbdDevice;
  structured: boolean;
  allocation: boolean;
}

class ProtocolError extends Error {}

/**
 * An NBD server (fixed newstyle handshake, simple and structured replies,
 * base:allocation) over NbdExports. Requests of one connection run
 * concurrently and are answered by cookie; a bad request gets an error reply,
 * a broken frame closes that connection only.
 */
export class NbdServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: NbdServerOptions) {}

  async listen(port: number, host: string): Promise<number> {
    this.server = createServer((s) => this.onConnection(s));
    return listenTcp(this.server, port, host);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(socket: Socket): void {
    if (this.opts.accept && !this.opts.accept(socket.remoteAddress ?? '')) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const reader = new SocketReader(socket);
    void (async () => {
      try {
        const session = await this.handshake(socket, reader);
        if (session) await this.transmission(socket, reader, session);
      } catch (err) {
        if (err instanceof ProtocolError) this.opts.logger.warn('nbd: closing connection', { reason: err.message });
      } finally {
        socket.destroy();
      }
    })();
  }

  // ---- handshake ----

  private optionReply(socket: Socket, opt: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(W.REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    socket.write(Buffer.concat([h, data]));
  }

  private async handshake(socket: Socket, r: SocketReader): Promise<Session | undefined> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(W.NBDMAGIC, 0);
    hello.writeBigUInt64BE(W.IHAVEOPT, 8);
    hello.writeUInt16BE(W.NBD_FLAG_FIXED_NEWSTYLE | W.NBD_FLAG_NO_ZEROES, 16);
    socket.write(hello);
    const clientFlags = (await r.read(4)).readUInt32BE(0);
    if ((clientFlags & ~(W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES)) !== 0) throw new ProtocolError(`unknown client flags ${clientFlags}`);
    const noZeroes = (clientFlags & W.NBD_FLAG_C_NO_ZEROES) !== 0;
    let structured = false;
    let allocation = false;
    for (;;) {
      const head = await r.read(16);
      if (head.readBigUInt64BE(0) !== W.IHAVEOPT) throw new ProtocolError('bad option magic');
      const opt = head.readUInt32BE(8);
      const len = head.readUInt32BE(12);
      if (len > 65536) throw new ProtocolError(`option ${opt} of ${len} bytes`);
      const data = await r.read(len);
      switch (opt) {
        case W.NBD_OPT_EXPORT_NAME: {
          const device = this.opts.exports.open(data.toString('utf8'));
          if (!device) throw new ProtocolError(`no export "${data.toString('utf8')}"`);
          const out = Buffer.alloc(noZeroes ? 10 : 134);
          out.writeBigUInt64BE(BigInt(device.size), 0);
          out.writeUInt16BE(TRANSMISSION_FLAGS, 8);
          socket.write(out);
          return { device, structured, allocation };
        }
        case W.NBD_OPT_ABORT:
          this.optionReply(socket, opt, W.NBD_REP_ACK);
          socket.end();
          return undefined;
        case W.NBD_OPT_LIST:
          if (len !== 0) {
            this.optionReply(socket, opt, W.NBD_REP_ERR_INVALID);
            break;
          }
          for (const e of this.opts.exports.list()) {
            const name = Buffer.from(e.name);
            const desc = Buffer.from(e.description);
            const d = Buffer.alloc(4);
            d.writeUInt32BE(name.length);
            this.optionReply(socket, opt, W.NBD_REP_SERVER, Buffer.concat([d, name, desc]));
          }
          this.optionReply(socket, opt, W.NBD_REP_ACK);
          break;
        case W.NBD_OPT_INFO:
        case W.NBD_OPT_GO: {
          const parsed = parseNameAndInfos(data);
          if (!parsed) {
            this.optionReply(socket, opt, W.NBD_REP_ERR_INVALID);
            break;
          }
          const device = this.opts.exports.open(parsed.name);
          if (!device) {
            this.optionReply(socket, opt, W.NBD_REP_ERR_UNKNOWN, Buffer.from(`no export "${parsed.name}"`));
            break;
          }
          const info = Buffer.alloc(12);
          info.writeUInt16BE(W.NBD_INFO_EXPORT, 0);
          info.writeBigUInt64BE(BigInt(device.size), 2);
          info.writeUInt16BE(TRANSMISSION_FLAGS, 10);
          this.optionReply(socket, opt, W.NBD_REP_INFO, info);
          if (parsed.infos.includes(W.NBD_INFO_BLOCK_SIZE)) {
            const bs = Buffer.alloc(14);
            bs.writeUInt16BE(W.NBD_INFO_BLOCK_SIZE, 0);
            bs.writeUInt32BE(1, 2);
            bs.writeUInt32BE(4096, 6);
            bs.writeUInt32BE(W.MAX_PAYLOAD, 10);
            this.optionReply(socket, opt, W.NBD_REP_INFO, bs);
          }
          if (parsed.infos.includes(W.NBD_INFO_NAME)) {
            const n = Buffer.alloc(2);
            n.writeUInt16BE(W.NBD_INFO_NAME);
            this.optionReply(socket, opt, W.NBD_REP_INFO, Buffer.concat([n, Buffer.from(parsed.name)]));
          }
          this.optionReply(socket, opt, W.NBD_REP_ACK);
          if (opt === W.NBD_OPT_GO) return { device, structured, allocation };
          break;
        }
        case W.NBD_OPT_STRUCTURED_REPLY:
          if (len !== 0) this.optionReply(socket, opt, W.NBD_REP_ERR_INVALID);
          else {
            structured = true;
            this.optionReply(socket, opt, W.NBD_REP_ACK);
          }
          break;
        case W.NBD_OPT_LIST_META_CONTEXT:
        case W.NBD_OPT_SET_META_CONTEXT: {
          const q = parseMetaQuery(data);
          if (!q || (opt === W.NBD_OPT_SET_META_CONTEXT && !structured)) {
            this.optionReply(socket, opt, W.NBD_REP_ERR_INVALID);
            break;
          }
          const wanted =
            q.queries.length === 0
              ? opt === W.NBD_OPT_LIST_META_CONTEXT
                ? [W.BASE_ALLOCATION]
                : []
              : q.queries.filter((x) => x === W.BASE_ALLOCATION || x === 'base:');
          if (opt === W.NBD_OPT_SET_META_CONTEXT) allocation = wanted.length > 0;
          if (wanted.length > 0) {
            const id = Buffer.alloc(4);
            id.writeUInt32BE(CONTEXT_ID);
            this.optionReply(socket, opt, W.NBD_REP_META_CONTEXT, Buffer.concat([id, Buffer.from(W.BASE_ALLOCATION)]));
          }
          this.optionReply(socket, opt, W.NBD_REP_ACK);
          break;
        }
        default:
          this.optionReply(socket, opt, W.NBD_REP_ERR_UNSUP);
      }
    }
  }

  // ---- transmission ----

  private async transmission(socket: Socket, r: SocketReader, s: Session): Promise<void> {
    const max = this.opts.maxInFlight ?? 64;
    let inFlight = 0;
    let slot: (() => void) | undefined;
    const all = new Set<Promise<void>>();
    for (;;) {
      const h = await r.read(28);
      if (h.readUInt32BE(0) !== W.NBD_REQUEST_MAGIC) throw new ProtocolError('bad request magic');
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const cookie = h.subarray(8, 16);
      const offset = Number(h.readBigUInt64BE(16));
      const length = h.readUInt32BE(24);
      if (type === W.NBD_CMD_DISC) {
        await Promise.all(all);
        return;
      }
      let payload: Buffer | undefined;
      if (type === W.NBD_CMD_WRITE) {
        if (length > W.MAX_PAYLOAD) throw new ProtocolError(`write of ${length} bytes`);
        payload = await r.read(length);
      }
      while (inFlight >= max) await new Promise<void>((res) => (slot = res));
      inFlight += 1;
      const p = this.run(socket, s, type, flags, cookie, offset, length, payload).finally(() => {
        inFlight -= 1;
        all.delete(p);
        slot?.();
        slot = undefined;
      });
      all.add(p);
    }
  }

  private async run(
    socket: Socket,
    s: Session,
    type: number,
    flags: number,
    cookie: Buffer,
    offset: number,
    length: number,
    payload: Buffer | undefined,
  ): Promise<void> {
    const dev = s.device;
    const inRange = offset + length <= dev.size;
    try {
      switch (type) {
        case W.NBD_CMD_READ: {
          if (!inRange || length > W.MAX_PAYLOAD) return this.error(socket, s, type, cookie, W.NBD_EINVAL, 'read outside the disk or too large');
          const data = await dev.read(offset, length);
          if (!s.structured) return this.simple(socket, cookie, 0, data);
          const h = chunkHeader(W.NBD_REPLY_TYPE_OFFSET_DATA, cookie, 8 + data.length);
          const off = Buffer.alloc(8);
          off.writeBigUInt64BE(BigInt(offset));
          return this.send(socket, [h, off, data]);
        }
        case W.NBD_CMD_WRITE:
          if (!inRange) return this.error(socket, s, type, cookie, W.NBD_EINVAL, 'write outside the disk');
          await dev.write(offset, payload!);
          if (flags & W.NBD_CMD_FLAG_FUA) await dev.flush();
          return this.simple(socket, cookie, 0);
        case W.NBD_CMD_FLUSH:
          await dev.flush();
          return this.simple(socket, cookie, 0);
        case W.NBD_CMD_TRIM:
        case W.NBD_CMD_CACHE:
          // TRIM is a hint (the overlay keeps what it has); CACHE is a prefetch hint.
          return this.simple(socket, cookie, inRange ? 0 : W.NBD_EINVAL);
        case W.NBD_CMD_WRITE_ZEROES: {
          if (!inRange) return this.simple(socket, cookie, W.NBD_EINVAL);
          const zeros = Buffer.alloc(Math.min(length, 1024 * 1024));
          for (let done = 0; done < length; done += zeros.length) await dev.write(offset + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
          if (flags & W.NBD_CMD_FLAG_FUA) await dev.flush();
          return this.simple(socket, cookie, 0);
        }
        case W.NBD_CMD_BLOCK_STATUS: {
          if (!s.allocation || !s.structured) return this.simple(socket, cookie, W.NBD_EINVAL);
          if (!inRange || length === 0) return this.error(socket, s, type, cookie, W.NBD_EINVAL, 'range outside the disk');
          let extents = dev.extents(offset, length);
          if (flags & W.NBD_CMD_FLAG_REQ_ONE) extents = extents.slice(0, 1);
          const body = Buffer.alloc(4 + 8 * extents.length);
          body.writeUInt32BE(CONTEXT_ID, 0);
          extents.forEach((e, i) => {
            body.writeUInt32BE(e.length, 4 + 8 * i);
            body.writeUInt32BE(e.hole ? W.NBD_STATE_HOLE | W.NBD_STATE_ZERO : 0, 8 + 8 * i);
          });
          return this.send(socket, [chunkHeader(W.NBD_REPLY_TYPE_BLOCK_STATUS, cookie, body.length), body]);
        }
        default:
          return this.error(socket, s, type, cookie, W.NBD_EINVAL, `unknown command ${type}`);
      }
    } catch (err) {
      const code = isLifeboatError(err) ? (err.category === 'NoSpace' ? W.NBD_ENOSPC : err.category === 'Invalid' ? W.NBD_EINVAL : W.NBD_EIO) : W.NBD_EIO;
      if (code === W.NBD_EIO) this.opts.logger.error(`nbd: answered EIO: ${err instanceof Error ? err.message : String(err)}`);
      return this.error(socket, s, type, cookie, code, err instanceof Error ? err.message : 'error');
    }
  }

  private send(socket: Socket, parts: Buffer[]): void {
    if (socket.destroyed) return;
    socket.cork();
    for (const p of parts) socket.write(p);
    socket.uncork();
  }

  private simple(socket: Socket, cookie: Buffer, error: number, data?: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(W.NBD_SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    cookie.copy(h, 8);
    this.send(socket, data ? [h, data] : [h]);
  }

  /** READ (and BLOCK_STATUS) errors in structured mode must be structured chunks. */
  private error(socket: Socket, s: Session, type: number, cookie: Buffer, code: number, message: string): void {
    if (!s.structured || (type !== W.NBD_CMD_READ && type !== W.NBD_CMD_BLOCK_STATUS)) return this.simple(socket, cookie, code);
    const msg = Buffer.from(message.slice(0, 200));
    const body = Buffer.alloc(6);
    body.writeUInt32BE(code, 0);
    body.writeUInt16BE(msg.length, 4);
    this.send(socket, [chunkHeader(W.NBD_REPLY_TYPE_ERROR, cookie, 6 + msg.length), body, msg]);
  }
}

function chunkHeader(type: number, cookie: Buffer, length: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(W.NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(W.NBD_REPLY_FLAG_DONE, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(length, 16);
  return h;
}

function parseNameAndInfos(d: Buffer): { name: string; infos: number[] } | undefined {
  if (d.length < 6) return undefined;
  const n = d.readUInt32BE(0);
  if (4 + n + 2 > d.length) return undefined;
  const name = d.subarray(4, 4 + n).toString('utf8');
  const count = d.readUInt16BE(4 + n);
  if (4 + n + 2 + 2 * count !== d.length) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(d.readUInt16BE(4 + n + 2 + 2 * i));
  return { name, infos };
}

function parseMetaQuery(d: Buffer): { name: string; queries: string[] } | undefined {
  if (d.length < 8) return undefined;
  const n = d.readUInt32BE(0);
  if (4 + n + 4 > d.length) return undefined;
  const name = d.subarray(4, 4 + n).toString('utf8');
  const count = d.readUInt32BE(4 + n);
  let at = 8 + n;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > d.length) return undefined;
    const l = d.readUInt32BE(at);
    if (at + 4 + l > d.length) return undefined;
    queries.push(d.subarray(at + 4, at + 4 + l).toString('utf8'));
    at += 4 + l;
  }
  return at === d.length ? { name, queries } : undefined;
}
