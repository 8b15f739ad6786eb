import { NFS3ERR_BADHANDLE, NFS3ERR_INVAL, NfsError } from '../nfs/index.js';

/**
 * The datastore's NFS file handles: 26 bytes (version, kind, session uuid,
 * disk index or inode). They and the fileids come from identities that
 * outlive the server process, so a hypervisor that stays mounted across a
 * restart keeps working.
 */
export const KIND_ROOT = 1;
export const KIND_SESSION = 2;
export const KIND_DISK = 3;
export const KIND_FILE = 4;
const HANDLE_VERSION = 1;
const HANDLE_BYTES = 26;
const VIRTUAL = 1n << 63n;

export function encodeHandle(kind: number, key: Buffer | undefined, id: bigint): Buffer {
  const h = Buffer.alloc(HANDLE_BYTES);
  h[0] = HANDLE_VERSION;
  h[1] = kind;
  key?.copy(h, 2);
  h.writeBigUInt64BE(id, 18);
  return h;
}

/** A handle's parts; BADHANDLE if it is not one of ours. Whether it still names something is the caller's (STALE). */
export function parseHandle(h: Buffer): { kind: number; sessionKey: string; id: bigint } {
  if (h.length !== HANDLE_BYTES || h[0] !== HANDLE_VERSION || h[1]! < KIND_ROOT || h[1]! > KIND_FILE) throw new NfsError(NFS3ERR_BADHANDLE);
  return { kind: h[1]!, sessionKey: h.subarray(2, 18).toString('hex'), id: h.readBigUInt64BE(18) };
}

/** A session folder's fileid (disk i is this + i + 1): high bit set, never an inode number. */
export function sessionFileid(key: Buffer): bigint {
  return VIRTUAL | ((key.readBigUInt64BE(0) >> 8n) << 8n);
}

/** A name a client sent, as a path below `rel`: never a separator, NUL, "." or ".." (the wire checks too). */
export function childRel(rel: string, name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw new NfsError(NFS3ERR_INVAL, 'invalid name');
  return rel === '' ? name : `${rel}/${name}`;
}
