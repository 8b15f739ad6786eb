import type { Socket } from 'node:net';
import type { NbdExports } from './export.js';
import { NbdProtocolError } from './nbd-errors.js';
import type { NegotiatedExport } from './nbd-transmission.js';
import type { SocketReader } from './socket-reader.js';
import * as W from './wire.js';

export const TRANSMISSION_FLAGS =
  W.NBD_FLAG_HAS_FLAGS |
  W.NBD_FLAG_SEND_FLUSH |
  W.NBD_FLAG_SEND_FUA |
  W.NBD_FLAG_SEND_TRIM |
  W.NBD_FLAG_SEND_WRITE_ZEROES |
  W.NBD_FLAG_SEND_CACHE |
  // Every connection to an export shares its one overlay, so flushes are seen by all.
  W.NBD_FLAG_CAN_MULTI_CONN;

/** The id of base:allocation in BLOCK_STATUS replies. */
export const CONTEXT_ID = 1;

/** Option data accepted at most; more closes the connection. */
const MAX_OPTION_LENGTH = 65536;
/** The protocol's limit for export names and meta-context queries. */
const MAX_STRING = 4096;
/** Option replies queued in the socket at most before the next option is read. */
const MAX_QUEUED_REPLIES = 1024 * 1024;

/** Writes option replies; once too much is queued (a client sending options without reading the answers), waits until it drains. */
class OptionReplies {
  constructor(private readonly socket: Socket) {}

  send(opt: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(W.REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    this.socket.write(Buffer.concat([h, data]));
  }

  async drained(): Promise<void> {
    const s = this.socket;
    if (s.writableLength <= MAX_QUEUED_REPLIES || s.destroyed) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        s.off('drain', done);
        s.off('close', done);
        resolve();
      };
      s.on('drain', done);
      s.on('close', done);
    });
  }
}

/** What NBD_OPT_SET_META_CONTEXT selected, and for which export. */
interface MetaSelection {
  readonly exportName: string;
  readonly allocation: boolean;
}

/**
 * The fixed newstyle handshake: greeting, then options until the client picks
 * an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or aborts (undefined). A
 * malformed option gets an error reply; only what the protocol says ends a
 * connection (unknown client flags, bad magic, NBD_OPT_EXPORT_NAME of an
 * unknown export) or an option too long to read ends it.
 */
export async function negotiate(socket: Socket, r: SocketReader, exports: NbdExports): Promise<NegotiatedExport | undefined> {
  const replies = new OptionReplies(socket);
  const hello = Buffer.alloc(18);
  hello.writeBigUInt64BE(W.NBDMAGIC, 0);
  hello.writeBigUInt64BE(W.IHAVEOPT, 8);
  hello.writeUInt16BE(W.NBD_FLAG_FIXED_NEWSTYLE | W.NBD_FLAG_NO_ZEROES, 16);
  socket.write(hello);
  const clientFlags = (await r.read(4)).readUInt32BE(0);
  if ((clientFlags & ~(W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES)) !== 0) throw new NbdProtocolError(`unknown client flags ${clientFlags}`);
  const noZeroes = (clientFlags & W.NBD_FLAG_C_NO_ZEROES) !== 0;
  let structured = false;
  let meta: MetaSelection | undefined;
  /** base:allocation applies only when it was selected for the export finally chosen. */
  const chosen = (exportName: string): boolean => structured && meta?.exportName === exportName && meta.allocation;
  for (;;) {
    await replies.drained();
    const head = await r.read(16);
    if (head.readBigUInt64BE(0) !== W.IHAVEOPT) throw new NbdProtocolError('bad option magic');
    const opt = head.readUInt32BE(8);
    const len = head.readUInt32BE(12);
    if (len > MAX_OPTION_LENGTH) throw new NbdProtocolError(`option ${opt} of ${len} bytes`);
    const data = await r.read(len);
    switch (opt) {
      case W.NBD_OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const device = len <= MAX_STRING ? exports.open(name) : undefined;
        // The protocol leaves no way to refuse this option but to close.
        if (!device) throw new NbdProtocolError(`no export "${name.slice(0, 100)}"`);
        const out = Buffer.alloc(noZeroes ? 10 : 134);
        out.writeBigUInt64BE(BigInt(device.size), 0);
        out.writeUInt16BE(TRANSMISSION_FLAGS, 8);
        socket.write(out);
        return { device, structured, allocation: chosen(name) };
      }
      case W.NBD_OPT_ABORT:
        replies.send(opt, W.NBD_REP_ACK);
        return undefined;
      case W.NBD_OPT_LIST:
        if (len !== 0) {
          replies.send(opt, W.NBD_REP_ERR_INVALID);
          break;
        }
        for (const e of exports.list()) {
          const name = Buffer.from(e.name);
          const desc = Buffer.from(e.description);
          const d = Buffer.alloc(4);
          d.writeUInt32BE(name.length);
          replies.send(opt, W.NBD_REP_SERVER, Buffer.concat([d, name, desc]));
        }
        replies.send(opt, W.NBD_REP_ACK);
        break;
      case W.NBD_OPT_INFO:
      case W.NBD_OPT_GO: {
        const parsed = parseNameAndInfos(data);
        if (!parsed) {
          replies.send(opt, W.NBD_REP_ERR_INVALID);
          break;
        }
        const device = exports.open(parsed.name);
        if (!device) {
          replies.send(opt, W.NBD_REP_ERR_UNKNOWN, Buffer.from(`no export "${parsed.name}"`));
          break;
        }
        const info = Buffer.alloc(12);
        info.writeUInt16BE(W.NBD_INFO_EXPORT, 0);
        info.writeBigUInt64BE(BigInt(device.size), 2);
        info.writeUInt16BE(TRANSMISSION_FLAGS, 10);
        replies.send(opt, W.NBD_REP_INFO, info);
        if (parsed.infos.includes(W.NBD_INFO_BLOCK_SIZE)) {
          const bs = Buffer.alloc(14);
          bs.writeUInt16BE(W.NBD_INFO_BLOCK_SIZE, 0);
          bs.writeUInt32BE(1, 2);
          bs.writeUInt32BE(4096, 6);
          bs.writeUInt32BE(W.MAX_PAYLOAD, 10);
          replies.send(opt, W.NBD_REP_INFO, bs);
        }
        if (parsed.infos.includes(W.NBD_INFO_NAME)) {
          const n = Buffer.alloc(2);
          n.writeUInt16BE(W.NBD_INFO_NAME);
          replies.send(opt, W.NBD_REP_INFO, Buffer.concat([n, Buffer.from(parsed.name)]));
        }
        replies.send(opt, W.NBD_REP_ACK);
        if (opt === W.NBD_OPT_GO) return { device, structured, allocation: chosen(parsed.name) };
        break;
      }
      case W.NBD_OPT_STRUCTURED_REPLY:
        if (len !== 0) replies.send(opt, W.NBD_REP_ERR_INVALID);
        else {
          structured = true;
          replies.send(opt, W.NBD_REP_ACK);
        }
        break;
      case W.NBD_OPT_LIST_META_CONTEXT:
      case W.NBD_OPT_SET_META_CONTEXT: {
        const listing = opt === W.NBD_OPT_LIST_META_CONTEXT;
        // A SET replaces what was selected before, even when it fails.
        if (!listing) meta = undefined;
        const q = parseMetaQuery(data);
        if (!q || (!listing && !structured)) {
          replies.send(opt, W.NBD_REP_ERR_INVALID);
          break;
        }
        if (!exports.open(q.name)) {
          replies.send(opt, W.NBD_REP_ERR_UNKNOWN, Buffer.from(`no export "${q.name}"`));
          break;
        }
        // "base:" lists the whole namespace but selects nothing; queries in other namespaces are ignored.
        const allocation = listing
          ? q.queries.length === 0 || q.queries.some((x) => x === W.BASE_ALLOCATION || x === 'base:')
          : q.queries.includes(W.BASE_ALLOCATION);
        if (!listing) meta = { exportName: q.name, allocation };
        if (allocation) {
          const id = Buffer.alloc(4);
          // Context ids in LIST replies are reserved (zero).
          id.writeUInt32BE(listing ? 0 : CONTEXT_ID);
          replies.send(opt, W.NBD_REP_META_CONTEXT, Buffer.concat([id, Buffer.from(W.BASE_ALLOCATION)]));
        }
        replies.send(opt, W.NBD_REP_ACK);
        break;
      }
      default:
        replies.send(opt, W.NBD_REP_ERR_UNSUP);
    }
  }
}

function parseNameAndInfos(d: Buffer): { name: string; infos: number[] } | undefined {
  if (d.length < 6) return undefined;
  const n = d.readUInt32BE(0);
  if (n > MAX_STRING || 4 + n + 2 > d.length) return undefined;
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
  if (n > MAX_STRING || 4 + n + 4 > d.length) return undefined;
  const name = d.subarray(4, 4 + n).toString('utf8');
  const count = d.readUInt32BE(4 + n);
  let at = 8 + n;
  const queries: string[] = [];
  // The count is the peer's word: the loop ends at the data's end whatever it says.
  for (let i = 0; i < count; i++) {
    if (at + 4 > d.length) return undefined;
    const l = d.readUInt32BE(at);
    if (l > MAX_STRING || at + 4 + l > d.length) return undefined;
    queries.push(d.subarray(at + 4, at + 4 + l).toString('utf8'));
    at += 4 + l;
  }
  return at === d.length ? { name, queries } : undefined;
}
