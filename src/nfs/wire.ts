import { XdrError, type XdrReader, type XdrWriter } from '../rpc/xdr.js';
import { NFS3ERR_BADHANDLE, NFS3ERR_FBIG, NFS3ERR_INVAL, NFS3ERR_NAMETOOLONG, NfsError } from './nfs-errors.js';
import type { CreateHow, FileType, NfsAttr, SetAttr } from './file-system.js';

/** RFC 1813 wire types and their codecs. */
export const NFS_PROGRAM = 100003;
export const NFS_V3 = 3;
export const NFS3_FHSIZE = 64;
/** VMware's NFSv3 client accepts handles of at most 56 bytes. */
export const MAX_HANDLE = 56;
export const NFS3_COOKIEVERFSIZE = 8;
export const NFS3_WRITEVERFSIZE = 8;
export const NFS3_CREATEVERFSIZE = 8;
export const MAX_NAME = 255;
/** Largest file size and write end accepted (FSINFO's maxfilesize): past it, FBIG before any file system call. */
export const MAX_FILE_SIZE = 2 ** 50;

const FTYPE: Record<FileType, number> = { file: 1, dir: 2, symlink: 5 };

/** nfs_fh3: shape checked here (BADHANDLE); existence is the file system's (STALE). */
export function readHandle(r: XdrReader): Buffer {
  const h = r.opaque(NFS3_FHSIZE, 'nfs_fh3');
  if (h.length === 0 || h.length > MAX_HANDLE) throw new NfsError(NFS3ERR_BADHANDLE, `handle of ${h.length} bytes`);
  return Buffer.from(h);
}

/**
 * filename3, checked: no empty names, no '/', no NUL, at most 255 bytes, and
 * valid UTF-8 (decoding would otherwise turn different byte strings into one
 * name, so a client could reach a file by a name it was never given).
 */
export function readName(r: XdrReader): string {
  const raw = r.opaque(1024, 'filename3');
  if (raw.length > MAX_NAME) throw new NfsError(NFS3ERR_NAMETOOLONG, 'name longer than 255 bytes');
  const name = raw.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(raw)) throw new NfsError(NFS3ERR_INVAL, 'name is not valid UTF-8');
  if (name.length === 0 || name.includes('/') || name.includes('\0')) throw new NfsError(NFS3ERR_INVAL, `invalid name ${JSON.stringify(name)}`);
  return name;
}

/** A name that may be created or removed: also not "." or "..". */
export function readNewName(r: XdrReader): string {
  const name = readName(r);
  if (name === '.' || name === '..') throw new NfsError(NFS3ERR_INVAL, `"${name}" cannot be created, removed or renamed`);
  return name;
}

function writeTime(w: XdrWriter, ms: number): void {
  const secs = Math.floor(ms / 1000);
  w.u32(secs).u32(Math.floor((ms - secs * 1000) * 1e6));
}

function readTime(r: XdrReader): number {
  const s = r.u32('seconds');
  const ns = r.u32('nseconds');
  if (ns >= 1e9) throw new NfsError(NFS3ERR_INVAL, `nseconds ${ns}`);
  return s * 1000 + Math.floor(ns / 1e6);
}

export function writeFattr(w: XdrWriter, a: NfsAttr, fsid: bigint): void {
  w.u32(FTYPE[a.type])
    .u32(a.mode & 0o7777)
    .u32(a.nlink)
    .u32(a.uid)
    .u32(a.gid)
    .u64(a.size)
    .u64(a.used);
  w.u32(0).u32(0); // rdev
  w.u64(fsid).u64(a.fileid);
  writeTime(w, a.atimeMs);
  writeTime(w, a.mtimeMs);
  writeTime(w, a.ctimeMs);
}

export function writePostOpAttr(w: XdrWriter, a: NfsAttr | undefined, fsid: bigint): void {
  if (a === undefined) w.bool(false);
  else {
    w.bool(true);
    writeFattr(w, a, fsid);
  }
}

/** wcc_data: we report no pre-op attributes (allowed) and the post-op ones. */
export function writeWcc(w: XdrWriter, after: NfsAttr | undefined, fsid: bigint): void {
  w.bool(false);
  writePostOpAttr(w, after, fsid);
}

export function writePostOpFh(w: XdrWriter, h: Buffer | undefined): void {
  if (h === undefined) w.bool(false);
  else w.bool(true).opaque(h);
}

/**
 * The mode bits a client may set: permissions only. Files are owned by the
 * server's user (root when it serves port 111), so setuid, setgid and sticky
 * bits from a client are dropped here, for every file system.
 */
export const SETTABLE_MODE_BITS = 0o777;

/** sattr3 (RFC 1813 §2.5). */
export function readSattr(r: XdrReader): SetAttr {
  const s: { -readonly [K in keyof SetAttr]: SetAttr[K] } = {};
  if (r.bool('set_mode')) s.mode = r.u32('mode') & SETTABLE_MODE_BITS;
  if (r.bool('set_uid')) s.uid = r.u32('uid');
  if (r.bool('set_gid')) s.gid = r.u32('gid');
  if (r.bool('set_size')) {
    const size = r.u64('size');
    if (size > BigInt(MAX_FILE_SIZE)) throw new NfsError(NFS3ERR_FBIG, `size ${size} is past the largest file`);
    s.size = Number(size);
  }
  for (const k of ['atime', 'mtime'] as const) {
    const how = r.u32(`set_${k}`);
    if (how === 1) s[k] = 'server';
    else if (how === 2) s[k] = readTime(r);
    else if (how !== 0) throw new XdrError(`time_how ${how}`);
  }
  return s;
}

export function readCreateHow(r: XdrReader): CreateHow {
  const mode = r.u32('createmode3');
  if (mode === 0 || mode === 1) return { mode: mode === 0 ? 'unchecked' : 'guarded', attrs: readSattr(r) };
  if (mode === 2) return { mode: 'exclusive', verifier: Buffer.from(r.fixedOpaque(NFS3_CREATEVERFSIZE, 'createverf3')) };
  throw new XdrError(`createmode3 ${mode}`);
}

/** offset3/count3 as safe numbers. */
export function readOffset(r: XdrReader): number {
  const v = r.u64('offset3');
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new NfsError(NFS3ERR_INVAL, 'offset too large');
  return Number(v);
}
