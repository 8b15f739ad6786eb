import { connect, type Socket } from 'node:net';
import { LifeboatError } from '../core/errors.js';
import { SocketReader } from './socket-reader.js';
import {
  IHAVEOPT,
  MAX_PAYLOAD,
  NBDMAGIC,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_EXPORT,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  REPLY_MAGIC,
} from './wire.js';

const NBD_REPLY_TYPE_NONE = 0;
const NBD_REPLY_TYPE_OFFSET_HOLE = 2;

/** Where an NBD export is: TCP host and port, or a unix socket; and its name. */
export interface NbdAddress {
  readonly host?: string;
  readonly port?: number;
  readonly socket?: string;
  readonly exportName: string;
}

/** `nbd://host[:port]/export` or `nbd+unix:///export?socket=/path` (the NBD URI spec). */
export function parseNbdUri(uri: string): NbdAddress {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `"${uri}" is not an NBD URI (nbd://host[:port]/export or nbd+unix:///export?socket=/path)`);
  }
  const exportName = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (u.protocol === 'nbd:') return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 10809 : Number(u.port), exportName };
  if (u.protocol === 'nbd+unix:') {
    const socket = u.searchParams.get('socket');
    if (!socket) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${uri}: nbd+unix needs ?socket=/path`);
    return { socket, exportName };
  }
  throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `"${uri}": only nbd:// and nbd+unix:// are supported`);
}

export function describeNbd(a: NbdAddress): string {
  return a.socket ? `nbd+unix:///${a.exportName}?socket=${a.socket}` : `nbd://${a.host}:${a.port}/${a.exportName}`;
}

/** One extent of a block-status answer. */
export interface NbdExtent {
  readonly offset: number;
  readonly length: number;
  readonly flags: number;
}

/** An extent as received: which context it belongs to as well. */
type ContextExtent = NbdExtent & { readonly context: number };

interface Pending {
  readonly kind: 'read' | 'status';
  readonly into?: Buffer;
  readonly offset: number;
  readonly extents: ContextExtent[];
  error?: string;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

/**
 * An NBD client (fixed newstyle, structured replies, metadata contexts): what
 * Lifeboat reads sources through. Many requests run at once on one
 * connection, matched by cookie. A connection that drops fails every request
 * in flight with LFB_ERR_DISK_READ; it is never retried silently.
 */
export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private failure: Error | undefined;
  private closing = false;

  private constructor(
    readonly address: NbdAddress,
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    readonly size: number,
    /** Metadata context name → id, as the server granted them. */
    readonly contexts: ReadonlyMap<string, number>,
  ) {
    void this.receive();
  }

  static async connect(address: NbdAddress, opts: { metaContexts?: readonly string[] } = {}): Promise<NbdClient> {
    const where = describeNbd(address);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = address.socket ? connect(address.socket) : connect(address.port ?? 10809, address.host ?? '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', (err) =>
        reject(new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `cannot connect to ${where}: ${err.message}`, { cause: err, details: { disk: where } })),
      );
    });
    socket.setNoDelay(true);
    const reader = new SocketReader(socket);
    const fail = (why: string): LifeboatError => new LifeboatError('LFB_ERR_DISK_READ', `${where}: ${why}`, { details: { disk: where } });
    try {
      const hello = await reader.read(18);
      if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) throw fail('not an NBD server (or an old-style one)');
      const flags = hello.readUInt16BE(16);
      if (!(flags & NBD_FLAG_FIXED_NEWSTYLE)) throw fail('the server does not speak fixed newstyle');
      const cflags = Buffer.alloc(4);
      cflags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | (flags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
      socket.write(cflags);
      const option = async (opt: number, data: Buffer): Promise<{ type: number; data: Buffer }[]> => {
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(IHAVEOPT, 0);
        h.writeUInt32BE(opt, 8);
        h.writeUInt32BE(data.length, 12);
        socket.write(Buffer.concat([h, data]));
        const replies: { type: number; data: Buffer }[] = [];
        for (;;) {
          const r = await reader.read(20);
          if (r.readBigUInt64BE(0) !== REPLY_MAGIC || r.readUInt32BE(8) !== opt) throw fail('bad option reply');
          const type = r.readUInt32BE(12);
          const len = r.readUInt32BE(16);
          if (len > 64 * 1024 * 1024) throw fail('option reply too large');
          const body = await reader.read(len);
          replies.push({ type, data: body });
          if (type === NBD_REP_ACK || type >= 0x80000000) return replies;
        }
      };
      const name = Buffer.from(address.exportName, 'utf8');
      const structured = await option(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      if (structured.at(-1)!.type !== NBD_REP_ACK) throw fail('the server does not offer structured replies');
      const contexts = new Map<string, number>();
      const wanted = opts.metaContexts ?? [];
      if (wanted.length > 0) {
        const q = [Buffer.alloc(4), name, Buffer.alloc(4)];
        q[0]!.writeUInt32BE(name.length);
        q[2]!.writeUInt32BE(wanted.length);
        for (const w of wanted) {
          const wb = Buffer.from(w, 'utf8');
          const l = Buffer.alloc(4);
          l.writeUInt32BE(wb.length);
          q.push(l, wb);
        }
        for (const r of await option(NBD_OPT_SET_META_CONTEXT, Buffer.concat(q))) {
          if (r.type === NBD_REP_META_CONTEXT) contexts.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
          else if (r.type >= 0x80000000) throw fail(`metadata contexts refused (${r.data.toString('utf8') || `error ${r.type - 0x80000000}`})`);
        }
      }
      const go = Buffer.alloc(4 + name.length + 2);
      go.writeUInt32BE(name.length, 0);
      name.copy(go, 4);
      go.writeUInt16BE(0, 4 + name.length);
      let size = -1;
      for (const r of await option(NBD_OPT_GO, go)) {
        if (r.type >= 0x80000000) {
          throw new LifeboatError(
            'LFB_ERR_DISK_NOT_FOUND',
            `${where}: the server refused export "${address.exportName}"${r.data.length ? `: ${r.data.toString('utf8')}` : ''}`,
            { details: { disk: where } },
          );
        }
        if (r.type === NBD_REP_INFO && r.data.readUInt16BE(0) === NBD_INFO_EXPORT) size = Number(r.data.readBigUInt64BE(2));
      }
      if (size < 0) throw fail('the server sent no export size');
      return new NbdClient(address, socket, reader, size, contexts);
    } catch (err) {
      socket.destroy();
      if (err instanceof LifeboatError) throw err;
      throw fail(`handshake failed: ${(err as Error).message}`);
    }
  }

  private send(type: number, cookie: bigint, offset: number, length: number): void {
    const r = Buffer.alloc(28);
    r.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    r.writeUInt16BE(0, 4);
    r.writeUInt16BE(type, 6);
    r.writeBigUInt64BE(cookie, 8);
    r.writeBigUInt64BE(BigInt(offset), 16);
    r.writeUInt32BE(length, 24);
    this.socket.write(r);
  }

  private request(kind: 'read' | 'status', type: number, offset: number, length: number, into?: Buffer): Promise<ContextExtent[]> {
    if (this.failure) return Promise.reject(this.failure);
    const cookie = this.nextCookie++;
    return new Promise<ContextExtent[]>((resolve, reject) => {
      const p: Pending = { kind, offset, extents: [], ...(into ? { into } : {}), resolve: () => resolve(p.extents), reject };
      this.pending.set(cookie, p);
      this.send(type, cookie, offset, length);
    });
  }

  /** Fills `into` with the bytes at `offset` (within the export). */
  async read(into: Buffer, offset: number): Promise<void> {
    for (let at = 0; at < into.length; at += MAX_PAYLOAD) {
      const part = into.subarray(at, Math.min(into.length, at + MAX_PAYLOAD));
      await this.request('read', NBD_CMD_READ, offset + at, part.length, part);
    }
  }

  /** Extents of [offset, offset+length) in a granted metadata context; may end before `length`. */
  async blockStatus(context: string, offset: number, length: number): Promise<NbdExtent[]> {
    if (!this.contexts.has(context)) throw new LifeboatError('LFB_ERR_INTERNAL', `metadata context ${context} was not granted`);
    const all = await this.request('status', NBD_CMD_BLOCK_STATUS, offset, Math.min(length, 0xffffffff - 0xfffff), undefined);
    const id = this.contexts.get(context)!;
    return all.filter((e) => e.context === id).map(({ offset: o, length: l, flags }) => ({ offset: o, length: l, flags }));
  }

  /** Every extent of a context over the whole export (asked piece by piece). */
  async mapAll(context: string): Promise<NbdExtent[]> {
    const out: NbdExtent[] = [];
    let at = 0;
    while (at < this.size) {
      const part = await this.blockStatus(context, at, Math.min(this.size - at, 2 ** 31));
      if (part.length === 0) throw new LifeboatError('LFB_ERR_DISK_READ', `${describeNbd(this.address)}: empty block status answer at ${at}`);
      for (const e of part) {
        const length = Math.min(e.length, this.size - e.offset);
        if (length <= 0) continue;
        out.push({ offset: e.offset, length, flags: e.flags });
      }
      at = out[out.length - 1]!.offset + out[out.length - 1]!.length;
    }
    return out;
  }

  private async receive(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.reader.read(4)).readUInt32BE(0);
        if (magic === NBD_SIMPLE_REPLY_MAGIC) {
          const h = await this.reader.read(12);
          const p = this.take(h.readBigUInt64BE(4));
          const error = h.readUInt32BE(0);
          if (error !== 0) {
            p.reject(this.replyError(p, error, ''));
            continue;
          }
          if (p.kind === 'read') await this.reader.readInto(p.into!);
          p.resolve();
          continue;
        }
        if (magic !== NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
        const h = await this.reader.read(16);
        const flags = h.readUInt16BE(0);
        const type = h.readUInt16BE(2);
        const cookie = h.readBigUInt64BE(4);
        const length = h.readUInt32BE(12);
        const p = this.pending.get(cookie);
        if (!p) throw new Error(`reply to an unknown request ${cookie}`);
        if (length > MAX_PAYLOAD + 64) throw new Error(`reply chunk of ${length} bytes`);
        if (type === NBD_REPLY_TYPE_OFFSET_DATA && p.into && length >= 8) {
          // Data lands in the caller's buffer straight from the socket's chunks.
          const at = Number((await this.reader.read(8)).readBigUInt64BE(0)) - p.offset;
          if (at < 0 || at + length - 8 > p.into.length) throw new Error('read reply outside the request');
          await this.reader.readInto(p.into.subarray(at, at + length - 8));
          if (flags & NBD_REPLY_FLAG_DONE) this.settle(cookie, p);
          continue;
        }
        const body = await this.reader.read(length);
        if (type & 0x8000) {
          const error = body.readUInt32BE(0);
          const msgLen = body.readUInt16BE(4);
          p.error ??= `${errnoName(error)}${msgLen > 0 ? `: ${body.subarray(6, 6 + msgLen).toString('utf8')}` : ''}`;
        } else if (type === NBD_REPLY_TYPE_OFFSET_HOLE && p.into) {
          const at = Number(body.readBigUInt64BE(0)) - p.offset;
          const n = body.readUInt32BE(8);
          if (at < 0 || at + n > p.into.length) throw new Error('hole reply outside the request');
          p.into.fill(0, at, at + n);
        } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
          const context = body.readUInt32BE(0);
          let at = p.offset;
          for (let i = 4; i + 8 <= body.length; i += 8) {
            const len = body.readUInt32BE(i);
            p.extents.push({ offset: at, length: len, flags: body.readUInt32BE(i + 4), context });
            at += len;
          }
        } else if (type !== NBD_REPLY_TYPE_NONE) throw new Error(`unexpected reply chunk type ${type}`);
        if (flags & NBD_REPLY_FLAG_DONE) this.settle(cookie, p);
      }
    } catch (err) {
      this.fail(this.closing ? 'connection closed' : `connection lost: ${(err as Error).message}`);
    }
  }

  private settle(cookie: bigint, p: Pending): void {
    this.pending.delete(cookie);
    if (p.error) p.reject(this.replyError(p, 0, p.error));
    else p.resolve();
  }

  private take(cookie: bigint): Pending {
    const p = this.pending.get(cookie);
    if (!p) throw new Error(`reply to an unknown request ${cookie}`);
    this.pending.delete(cookie);
    return p;
  }

  private replyError(p: Pending, errno: number, text: string): LifeboatError {
    const where = describeNbd(this.address);
    return new LifeboatError(
      'LFB_ERR_DISK_READ',
      `${where}: ${p.kind === 'read' ? 'read' : 'block status'} at offset ${p.offset} failed: ${text || errnoName(errno)}`,
      { details: { disk: where, offset: p.offset } },
    );
  }

  private fail(why: string): void {
    const where = describeNbd(this.address);
    this.failure ??= new LifeboatError('LFB_ERR_DISK_READ', `${where}: ${why}; the run stops (no partial point is kept)`, { details: { disk: where } });
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.socket.destroy();
  }

  async close(): Promise<void> {
    if (this.failure) return;
    this.closing = true;
    try {
      this.send(NBD_CMD_DISC, this.nextCookie++, 0, 0);
    } catch {
      // already gone
    }
    this.socket.end();
    await new Promise<void>((r) => {
      if (this.socket.destroyed) r();
      else {
        this.socket.once('close', () => r());
        setTimeout(() => {
          this.socket.destroy();
          r();
        }, 1000).unref();
      }
    });
  }
}

function errnoName(e: number): string {
  return (
    ({ 1: 'EPERM', 5: 'EIO', 12: 'ENOMEM', 22: 'EINVAL', 28: 'ENOSPC', 75: 'EOVERFLOW', 95: 'ENOTSUP', 108: 'ESHUTDOWN' } as Record<number, string>)[e] ??
    `error ${e}`
  );
}
