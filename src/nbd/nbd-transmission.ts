import type { Socket } from 'node:net';
import type { Logger } from '../core/log.js';
import type { PinnedBytes } from '../core/pinned-bytes.js';
import type { NbdDevice } from './export.js';
import type { ByteBudget } from './nbd-budget.js';
import { NbdProtocolError, nbdErrorOf } from './nbd-errors.js';
import { CONTEXT_ID } from './nbd-handshake.js';
import { ReplyQueue } from './nbd-reply-queue.js';
import { ConnectionClosed, type SocketReader } from './socket-reader.js';
import * as W from './wire.js';

/** What the handshake settled for one connection. */
export interface NegotiatedExport {
  readonly device: NbdDevice;
  readonly structured: boolean;
  readonly allocation: boolean;
}

/** Per connection. A request is in flight from its header until its reply has reached the kernel. */
export interface TransmissionLimits {
  /** Requests in flight. */
  readonly maxRequests: number;
  /** Payload bytes in flight: READ data being read or queued in the socket, WRITE data read ahead of the device. */
  readonly maxBytes: number;
  /** Close the connection after this long without a request in flight; 0: never. */
  readonly idleTimeoutMs: number;
  /** Close the connection when replies have waited this long for the client to read them; 0: never. */
  readonly replyStallTimeoutMs: number;
}

/** Extents in one BLOCK_STATUS reply at most; the client asks again from where the reply ends. */
const MAX_EXTENTS = 16384;
/** WRITE_ZEROES writes this much at a time. */
const ZERO_CHUNK = 1024 * 1024;
/** A flush slower than this is worth a log line: the overlay's storage is struggling. */
const SLOW_FLUSH_MS = 1000;

interface Request {
  readonly type: number;
  readonly flags: number;
  readonly cookie: Buffer;
  readonly offset: number;
  readonly length: number;
  readonly inRange: boolean;
}

/** One request's share of the limits, given back once. */
class Hold {
  replied = false;
  /** A READ's bytes the device lent: given back with the hold, once the kernel has the reply (or the connection is gone). */
  lent: PinnedBytes | undefined;
  constructor(readonly bytes: number) {}
}

/**
 * Command flags each command may carry. FUA is valid on every command (the
 * protocol says so; some clients set it on reads); DF and FAST_ZERO are not
 * advertised, so never valid.
 */
function allowedFlags(type: number): number {
  switch (type) {
    case W.NBD_CMD_WRITE_ZEROES:
      return W.NBD_CMD_FLAG_FUA | W.NBD_CMD_FLAG_NO_HOLE;
    case W.NBD_CMD_BLOCK_STATUS:
      return W.NBD_CMD_FLAG_FUA | W.NBD_CMD_FLAG_REQ_ONE;
    default:
      return W.NBD_CMD_FLAG_FUA;
  }
}

/** The bytes a request holds while in flight: its payload either way, or the server's scratch space. */
function requestBytes(type: number, length: number): number {
  switch (type) {
    case W.NBD_CMD_READ:
      // A longer READ is refused without reading anything.
      return length <= W.MAX_PAYLOAD ? length : 0;
    case W.NBD_CMD_WRITE:
      return length;
    case W.NBD_CMD_WRITE_ZEROES:
      return Math.min(length, ZERO_CHUNK);
    case W.NBD_CMD_BLOCK_STATUS:
      return 4 + 8 * MAX_EXTENTS;
    default:
      return 0;
  }
}

/**
 * The transmission phase of one connection. Requests run concurrently and are
 * answered by cookie. Before reading a request's payload or starting it, the
 * loop waits until the connection's requests and bytes in flight (and the
 * server-wide byte budget) have room; while it waits it reads nothing, so a
 * client that does not read its replies is stopped by TCP flow control
 * instead of growing the server's memory.
 */
export class Transmission {
  private requests = 0;
  private bytes = 0;
  private readonly holds = new Set<Hold>();
  private readonly running = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly replies: ReplyQueue;
  private lastActivityAt = performance.now();

  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    private readonly session: NegotiatedExport,
    private readonly limits: TransmissionLimits,
    private readonly budget: ByteBudget,
    private readonly logger: Logger,
  ) {
    this.replies = new ReplyQueue(socket);
    const timeouts = [limits.idleTimeoutMs, limits.replyStallTimeoutMs].filter((t) => t > 0);
    const watchdog = timeouts.length > 0 ? setInterval(() => this.checkTimeouts(), Math.max(20, Math.min(...timeouts) / 4)) : undefined;
    watchdog?.unref();
    socket.once('close', () => {
      clearInterval(watchdog);
      this.closed = true;
      for (const h of [...this.holds]) this.release(h);
      this.wakeLoop();
    });
  }

  private checkTimeouts(): void {
    const now = performance.now();
    const { idleTimeoutMs: idle, replyStallTimeoutMs: stall } = this.limits;
    if (stall > 0 && this.replies.stalledMs(now) >= stall) {
      this.logger.warn('nbd: closing a connection whose client does not read its replies', { afterMs: stall });
      this.socket.destroy();
    } else if (idle > 0 && this.requests === 0 && now - this.lastActivityAt >= idle) {
      this.logger.info('nbd: closing an idle connection', { afterMs: idle });
      this.socket.destroy();
    }
  }

  /** Reads and answers requests until NBD_CMD_DISC (resolves once all are answered) or until the connection breaks (rejects). */
  async serve(): Promise<void> {
    const size = BigInt(this.session.device.size);
    for (;;) {
      const h = await this.reader.read(28);
      this.lastActivityAt = performance.now();
      if (h.readUInt32BE(0) !== W.NBD_REQUEST_MAGIC) throw new NbdProtocolError('bad request magic');
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      // A copy: a subarray would keep the socket chunk it came from alive.
      const cookie = Buffer.from(h.subarray(8, 16));
      const offset = h.readBigUInt64BE(16);
      const length = h.readUInt32BE(24);
      if (type === W.NBD_CMD_DISC) {
        await Promise.all(this.running);
        await this.replies.allHanded();
        return;
      }
      if (type === W.NBD_CMD_WRITE && length > W.MAX_PAYLOAD) throw new NbdProtocolError(`write of ${length} bytes`);
      const hold = await this.admit(requestBytes(type, length));
      const payload = type === W.NBD_CMD_WRITE ? await this.reader.read(length) : undefined;
      // Compared as bigints: an offset near 2^64 must not round into range.
      const inRange = offset + BigInt(length) <= size;
      const req: Request = { type, flags, cookie, offset: inRange ? Number(offset) : 0, length, inRange };
      const p = this.answer(hold, req, payload);
      this.running.add(p);
      void p.finally(() => this.running.delete(p));
    }
  }

  /** Waits for room for one more request of `bytes`, then takes it. */
  private async admit(bytes: number): Promise<Hold> {
    // A request larger than the whole allowance still runs, alone.
    // While it waits, nothing more is read (the reader resumes the socket at
    // its next read), so a client cannot look alive to the stall timeout by
    // trickling requests while its replies wait.
    while (this.requests >= this.limits.maxRequests || (this.bytes > 0 && this.bytes + bytes > this.limits.maxBytes)) {
      if (this.closed) throw new ConnectionClosed();
      this.socket.pause();
      await new Promise<void>((r) => (this.wake = r));
    }
    if (!this.budget.tryTake(bytes)) {
      this.socket.pause();
      await this.budget.take(bytes);
    }
    if (this.closed) {
      this.budget.give(bytes);
      throw new ConnectionClosed();
    }
    const hold = new Hold(bytes);
    this.holds.add(hold);
    this.requests += 1;
    this.bytes += bytes;
    return hold;
  }

  private release(hold: Hold): void {
    if (!this.holds.delete(hold)) return;
    hold.lent?.release();
    hold.lent = undefined;
    this.requests -= 1;
    this.bytes -= hold.bytes;
    this.budget.give(hold.bytes);
    this.lastActivityAt = performance.now();
    this.wakeLoop();
  }

  private wakeLoop(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Runs one request and replies; never rejects. */
  private async answer(hold: Hold, q: Request, payload: Buffer | undefined): Promise<void> {
    try {
      await this.run(hold, q, payload);
    } catch (err) {
      if (hold.replied) return;
      const code = nbdErrorOf(err);
      const message = err instanceof Error ? err.message : String(err);
      // EIO is the server's own failure; the others (a full disk above all) the client is told and may act on.
      if (code === W.NBD_EIO) this.logger.error(`nbd: answered EIO: ${message}`);
      else this.logger.warn(`nbd: answered error ${code}: ${message}`);
      this.error(hold, q, code, message);
    } finally {
      if (!hold.replied) this.release(hold);
    }
  }

  /** Flushes the device; one that takes over SLOW_FLUSH_MS is logged (with the connection's session, disk and client). */
  private async flush(): Promise<void> {
    const started = performance.now();
    await this.session.device.flush();
    const ms = Math.round(performance.now() - started);
    if (ms > SLOW_FLUSH_MS) this.logger.info('nbd: slow flush', { ms });
  }

  private async run(hold: Hold, q: Request, payload: Buffer | undefined): Promise<void> {
    const dev = this.session.device;
    const s = this.session;
    if ((q.flags & ~allowedFlags(q.type)) !== 0) return this.error(hold, q, W.NBD_EINVAL, `flags ${q.flags} are not valid on command ${q.type}`);
    switch (q.type) {
      case W.NBD_CMD_READ: {
        // Zero bytes cannot be answered in structured mode (a data chunk carries at least one), so they are refused in both.
        if (!q.inRange || q.length === 0 || q.length > W.MAX_PAYLOAD) return this.error(hold, q, W.NBD_EINVAL, 'read outside the disk, empty or too large');
        let data: readonly Buffer[];
        if (dev.readPinned !== undefined) {
          hold.lent = await dev.readPinned(q.offset, q.length);
          data = hold.lent.parts;
          if (!this.holds.has(hold)) {
            // The connection closed while the device read, and gave the hold back without these bytes.
            hold.lent.release();
            hold.lent = undefined;
            return;
          }
        } else data = [await dev.read(q.offset, q.length)];
        if (!s.structured) return this.simple(hold, q.cookie, 0, data);
        // The chunk's header and the data's offset in one small buffer.
        let bytes = 0;
        for (const part of data) bytes += part.length;
        const h = chunkHeader(W.NBD_REPLY_TYPE_OFFSET_DATA, q.cookie, 8 + bytes, 8);
        h.writeBigUInt64BE(BigInt(q.offset), 20);
        return this.send(hold, [h, ...data]);
      }
      case W.NBD_CMD_WRITE:
        // The protocol asks for ENOSPC when a write goes past the end of the disk.
        if (!q.inRange) return this.error(hold, q, W.NBD_ENOSPC, 'write outside the disk');
        await dev.write(q.offset, payload!);
        if (q.flags & W.NBD_CMD_FLAG_FUA) await this.flush();
        return this.simple(hold, q.cookie, 0);
      case W.NBD_CMD_FLUSH:
        await this.flush();
        return this.simple(hold, q.cookie, 0);
      case W.NBD_CMD_TRIM:
      case W.NBD_CMD_CACHE:
        // TRIM is a hint (the overlay keeps what it has); CACHE is a prefetch hint.
        return this.simple(hold, q.cookie, q.inRange ? 0 : W.NBD_EINVAL);
      case W.NBD_CMD_WRITE_ZEROES: {
        if (!q.inRange) return this.simple(hold, q.cookie, W.NBD_ENOSPC);
        const zeros = Buffer.alloc(Math.min(q.length, ZERO_CHUNK));
        for (let done = 0; done < q.length; done += zeros.length) await dev.write(q.offset + done, zeros.subarray(0, Math.min(zeros.length, q.length - done)));
        if (q.flags & W.NBD_CMD_FLAG_FUA) await this.flush();
        return this.simple(hold, q.cookie, 0);
      }
      case W.NBD_CMD_BLOCK_STATUS: {
        if (!s.allocation || !s.structured) return this.simple(hold, q.cookie, W.NBD_EINVAL);
        if (!q.inRange || q.length === 0) return this.error(hold, q, W.NBD_EINVAL, 'range outside the disk');
        let extents = dev.extents(q.offset, q.length).slice(0, MAX_EXTENTS);
        if (q.flags & W.NBD_CMD_FLAG_REQ_ONE) extents = extents.slice(0, 1);
        const body = Buffer.alloc(4 + 8 * extents.length);
        body.writeUInt32BE(CONTEXT_ID, 0);
        extents.forEach((e, i) => {
          body.writeUInt32BE(e.length, 4 + 8 * i);
          body.writeUInt32BE(e.hole ? W.NBD_STATE_HOLE | W.NBD_STATE_ZERO : 0, 8 + 8 * i);
        });
        return this.send(hold, [chunkHeader(W.NBD_REPLY_TYPE_BLOCK_STATUS, q.cookie, body.length), body]);
      }
      default:
        return this.error(hold, q, W.NBD_EINVAL, `unknown command ${q.type}`);
    }
  }

  /** Writes one reply; the request's hold is given back when the kernel has taken all of it. */
  private send(hold: Hold, parts: Buffer[]): void {
    hold.replied = true;
    if (this.socket.destroyed) return this.release(hold);
    this.replies.write(parts, () => this.release(hold));
  }

  private simple(hold: Hold, cookie: Buffer, error: number, data: readonly Buffer[] = []): void {
    // Every byte is written: from Node's pool, not a zeroed buffer of its own (one per reply).
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(W.NBD_SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    cookie.copy(h, 8);
    this.send(hold, [h, ...data]);
  }

  /** READ (and BLOCK_STATUS) errors in structured mode must be structured chunks. */
  private error(hold: Hold, q: Request, code: number, message: string): void {
    if (!this.session.structured || (q.type !== W.NBD_CMD_READ && q.type !== W.NBD_CMD_BLOCK_STATUS)) return this.simple(hold, q.cookie, code);
    const msg = Buffer.from(message.slice(0, 200));
    const body = Buffer.alloc(6);
    body.writeUInt32BE(code, 0);
    body.writeUInt16BE(msg.length, 4);
    this.send(hold, [chunkHeader(W.NBD_REPLY_TYPE_ERROR, q.cookie, 6 + msg.length), body, msg]);
  }
}

/** A structured reply chunk's 20-byte header, with `room` bytes after it for the caller to fill. */
function chunkHeader(type: number, cookie: Buffer, length: number, room = 0): Buffer {
  // Every byte is written (the caller writes its room): from Node's pool, not a zeroed buffer of its own.
  const h = Buffer.allocUnsafe(20 + room);
  h.writeUInt32BE(W.NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(W.NBD_REPLY_FLAG_DONE, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(length, 16);
  return h;
}
