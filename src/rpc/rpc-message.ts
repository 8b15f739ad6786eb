import { XdrError, XdrReader, XdrWriter } from './xdr.js';

/** RFC 5531 §9 constants, spelled as in the RFC. */
export const CALL = 0;
export const REPLY = 1;
export const MSG_ACCEPTED = 0;
export const MSG_DENIED = 1;
export const SUCCESS = 0;
export const PROG_UNAVAIL = 1;
export const PROG_MISMATCH = 2;
export const PROC_UNAVAIL = 3;
export const GARBAGE_ARGS = 4;
export const SYSTEM_ERR = 5;
export const RPC_MISMATCH = 0;
export const AUTH_ERROR = 1;
export const AUTH_BADCRED = 1;
export const AUTH_TOOWEAK = 5;
export const AUTH_NONE = 0;
export const AUTH_SYS = 1;
/** RFC 5531 §8.2: opaque_auth bodies are at most 400 bytes. */
export const MAX_AUTH_BYTES = 400;

/** AUTH_SYS credentials (RFC 5531 Appendix A, authsys_parms). */
export interface AuthSys {
  readonly stamp: number;
  readonly machineName: string;
  readonly uid: number;
  readonly gid: number;
  readonly gids: readonly number[];
}

export type Credentials = { readonly flavor: 'none' } | ({ readonly flavor: 'sys' } & AuthSys) | { readonly flavor: 'other'; readonly code: number };

export interface RpcCall {
  readonly xid: number;
  readonly rpcvers: number;
  readonly prog: number;
  readonly vers: number;
  readonly proc: number;
  readonly cred: Credentials;
  /** The procedure's arguments, positioned after the header. */
  readonly args: XdrReader;
}

/**
 * Decodes a call header. Returns the xid alone when the header is unreadable
 * but the xid is known (so a GARBAGE_ARGS reply can still be matched), and
 * throws when even that is impossible or the message is not a CALL.
 */
export function decodeCall(record: Buffer): RpcCall {
  const r = new XdrReader(record);
  const xid = r.u32('xid');
  const type = r.u32('msg_type');
  if (type !== CALL) throw new XdrError(`message ${xid} is not a CALL (msg_type ${type})`);
  const rpcvers = r.u32('rpcvers');
  const prog = r.u32('prog');
  const vers = r.u32('vers');
  const proc = r.u32('proc');
  const credFlavor = r.u32('cred flavor');
  const credBody = r.opaque(MAX_AUTH_BYTES, 'cred body');
  r.u32('verf flavor');
  r.opaque(MAX_AUTH_BYTES, 'verf body');
  return { xid, rpcvers, prog, vers, proc, cred: decodeCred(credFlavor, credBody), args: r };
}

function decodeCred(flavor: number, body: Buffer): Credentials {
  if (flavor === AUTH_NONE) return { flavor: 'none' };
  if (flavor !== AUTH_SYS) return { flavor: 'other', code: flavor };
  const r = new XdrReader(body);
  const stamp = r.u32('stamp');
  const machineName = r.string(255, 'machinename');
  const uid = r.u32('uid');
  const gid = r.u32('gid');
  const n = r.u32('gids count');
  if (n > 16) throw new XdrError(`AUTH_SYS with ${n} groups (at most 16)`);
  const gids: number[] = [];
  for (let i = 0; i < n; i++) gids.push(r.u32('gid'));
  r.end('AUTH_SYS body');
  return { flavor: 'sys', stamp, machineName, uid, gid, gids };
}

/** Reply header up to and including accept_stat; the caller appends results. */
export function acceptedReply(xid: number, stat: number): XdrWriter {
  return new XdrWriter().u32(xid).u32(REPLY).u32(MSG_ACCEPTED).u32(AUTH_NONE).u32(0).u32(stat);
}

export function progMismatchReply(xid: number, low: number, high: number): XdrWriter {
  return acceptedReply(xid, PROG_MISMATCH).u32(low).u32(high);
}

export function rpcMismatchReply(xid: number): XdrWriter {
  return new XdrWriter().u32(xid).u32(REPLY).u32(MSG_DENIED).u32(RPC_MISMATCH).u32(2).u32(2);
}

export function authErrorReply(xid: number, authStat: number): XdrWriter {
  return new XdrWriter().u32(xid).u32(REPLY).u32(MSG_DENIED).u32(AUTH_ERROR).u32(authStat);
}

/** Encodes a CALL (used by tests and by our own RPC clients, e.g. registering with rpcbind). */
export function encodeCall(xid: number, prog: number, vers: number, proc: number, args: Buffer, cred?: AuthSys): Buffer {
  const w = new XdrWriter().u32(xid).u32(CALL).u32(2).u32(prog).u32(vers).u32(proc);
  if (cred) {
    const body = new XdrWriter().u32(cred.stamp).string(cred.machineName).u32(cred.uid).u32(cred.gid).u32(cred.gids.length);
    for (const g of cred.gids) body.u32(g);
    w.u32(AUTH_SYS).opaque(body.toBuffer());
  } else w.u32(AUTH_NONE).u32(0);
  w.u32(AUTH_NONE).u32(0);
  return Buffer.concat([w.toBuffer(), args]);
}
