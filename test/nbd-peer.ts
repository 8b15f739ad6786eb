/**
 * A raw NBD peer for tests: speaks the wire format byte by byte, so a test can
 * behave as no real client would (never read replies, send floods, bad lengths).
 */
import { connect, type Socket } from 'node:net';
import { SocketReader } from '../src/nbd/socket-reader.js';
import * as W from '../src/nbd/wire.js';

export interface OptionReply {
  readonly opt: number;
  readonly type: number;
  readonly data: Buffer;
}

export interface SimpleReply {
  readonly error: number;
  readonly cookie: bigint;
  readonly data: Buffer;
}

export interface ReplyChunk {
  readonly flags: number;
  readonly type: number;
  readonly cookie: bigint;
  readonly payload: Buffer;
}

export interface Request {
  readonly type: number;
  readonly cookie: bigint;
  readonly offset: bigint | number;
  readonly length: number;
  readonly flags?: number;
  readonly payload?: Buffer;
}

export class NbdPeer {
  readonly reader: SocketReader;
  /** Bytes the server has sent so far, read or not. */
  received = 0;
  readonly closed: Promise<void>;

  private constructor(
    readonly socket: Socket,
    readAhead: number,
  ) {
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => (this.received += d.length));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.reader = new SocketReader(socket, readAhead);
  }

  /** Connects to a unix socket path, or to a TCP port on 127.0.0.1; `readAhead`: bytes buffered before the socket is paused. */
  static connect(where: string | number, readAhead = 64 * 1024 * 1024): Promise<NbdPeer> {
    return new Promise((resolve, reject) => {
      const s = typeof where === 'string' ? connect(where) : connect(where, '127.0.0.1');
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new NbdPeer(s, readAhead));
      });
    });
  }

  /** Reads the server's greeting and answers with client flags. */
  async greet(clientFlags = W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const hello = await this.reader.read(18);
    if (hello.readBigUInt64BE(0) !== W.NBDMAGIC || hello.readBigUInt64BE(8) !== W.IHAVEOPT) throw new Error('not an NBD newstyle greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags);
    this.socket.write(flags);
    return hello.readUInt16BE(16);
  }

  sendOption(opt: number, data: Buffer = Buffer.alloc(0), declaredLength = data.length): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(W.IHAVEOPT, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(declaredLength, 12);
    this.socket.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const h = await this.reader.read(20);
    if (h.readBigUInt64BE(0) !== W.REPLY_MAGIC) throw new Error('bad option reply magic');
    const data = await this.reader.read(h.readUInt32BE(16));
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data: Buffer.from(data) };
  }

  /** Replies to one option up to and including its final one (ACK or an error). */
  async readOptionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      out.push(r);
      if (r.type === W.NBD_REP_ACK || r.type >= 0x80000000) return out;
    }
  }

  /** The whole handshake up to transmission: greeting, optional structured replies and base:allocation, NBD_OPT_GO. */
  async open(exportName: string, opts: { structured?: boolean; allocation?: boolean } = {}): Promise<{ size: number; flags: number }> {
    await this.greet();
    if (opts.structured || opts.allocation) {
      this.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      const [r] = await this.readOptionReplies();
      if (r?.type !== W.NBD_REP_ACK) throw new Error('structured replies refused');
    }
    if (opts.allocation) {
      this.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaQuery(exportName, [W.BASE_ALLOCATION]));
      const replies = await this.readOptionReplies();
      if (!replies.some((r) => r.type === W.NBD_REP_META_CONTEXT)) throw new Error('base:allocation refused');
    }
    this.sendOption(W.NBD_OPT_GO, nameAndInfos(exportName, []));
    const replies = await this.readOptionReplies();
    const info = replies.find((r) => r.type === W.NBD_REP_INFO && r.data.readUInt16BE(0) === W.NBD_INFO_EXPORT);
    if (replies.at(-1)?.type !== W.NBD_REP_ACK || !info) throw new Error(`NBD_OPT_GO failed with reply type ${replies.at(-1)?.type}`);
    return { size: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
  }

  sendRequest(q: Request): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(q.flags ?? 0, 4);
    h.writeUInt16BE(q.type, 6);
    h.writeBigUInt64BE(q.cookie, 8);
    h.writeBigUInt64BE(BigInt(q.offset), 16);
    h.writeUInt32BE(q.length, 24);
    this.socket.write(q.payload ? Buffer.concat([h, q.payload]) : h);
  }

  /** A simple reply; `dataLength` bytes follow it when it answers a successful READ. */
  async readSimpleReply(dataLength: (cookie: bigint) => number = () => 0): Promise<SimpleReply> {
    const h = await this.reader.read(16);
    if (h.readUInt32BE(0) !== W.NBD_SIMPLE_REPLY_MAGIC) throw new Error(`bad simple reply magic ${h.readUInt32BE(0).toString(16)}`);
    const error = h.readUInt32BE(4);
    const cookie = h.readBigUInt64BE(8);
    const data = error === 0 ? await this.reader.read(dataLength(cookie)) : Buffer.alloc(0);
    return { error, cookie, data };
  }

  /** One structured reply chunk (or a simple reply, returned as a chunk of type -1 with the error in `flags`). */
  async readChunk(): Promise<ReplyChunk> {
    const magic = (await this.reader.read(4)).readUInt32BE(0);
    if (magic === W.NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await this.reader.read(12);
      return { flags: rest.readUInt32BE(0), type: -1, cookie: rest.readBigUInt64BE(4), payload: Buffer.alloc(0) };
    }
    if (magic !== W.NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic ${magic.toString(16)}`);
    const h = await this.reader.read(16);
    const payload = Buffer.from(await this.reader.read(h.readUInt32BE(12)));
    return { flags: h.readUInt16BE(0), type: h.readUInt16BE(2), cookie: h.readBigUInt64BE(4), payload };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function nameAndInfos(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((x, i) => b.writeUInt16BE(x, 4 + n.length + 2 + 2 * i));
  return b;
}

export function metaQuery(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.from(name);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(n.length);
  parts.push(head, n);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length);
  parts.push(count);
  for (const q of queries) {
    const b = Buffer.from(q);
    const l = Buffer.alloc(4);
    l.writeUInt32BE(b.length);
    parts.push(l, b);
  }
  return Buffer.concat(parts);
}
