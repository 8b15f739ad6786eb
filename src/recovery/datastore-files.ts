import { chmod, lstat, mkdir, open, truncate, utimes } from 'node:fs/promises';
import { constants as fsc, type BigIntStats } from 'node:fs';
import { NFS3ERR_EXIST, NFS3ERR_INVAL, NfsError, type CreateHow, type NfsAttr, type SetAttr } from '../nfs/index.js';
import { PERMISSION_BITS } from './datastore-index.js';

/**
 * The real files of a session folder (what the hypervisor creates: .vmx,
 * locks, logs, swap), as the datastore changes them for clients. Two rules
 * hold for every operation here: a symbolic link is never followed (nothing
 * outside the session folder is read, written or changed through one) and no
 * file gets a setuid, setgid or sticky bit (the server may run as root).
 */

/** Opening a session file never follows a symbolic link out of the session folder. */
const NO_FOLLOW = fsc.O_NOFOLLOW;

/** Attributes of a folder the datastore makes up (the export's root, a session folder). */
export function virtualDirAttr(fileid: bigint, ms: number): NfsAttr {
  return { type: 'dir', mode: 0o755, nlink: 2, uid: 0, gid: 0, size: 4096, used: 4096, fileid, atimeMs: ms, mtimeMs: ms, ctimeMs: ms };
}

export function realAttr(st: BigIntStats): NfsAttr {
  return {
    type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
    mode: Number(st.mode) & 0o7777,
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    used: Number(st.blocks) * 512,
    fileid: st.ino,
    atimeMs: Number(st.atimeMs),
    mtimeMs: Number(st.mtimeMs),
    ctimeMs: Number(st.ctimeMs),
  };
}

/** SETATTR of a real file or folder; `nowMs` for times set to the server's time. */
export async function setRealAttrs(path: string, st: BigIntStats, set: SetAttr, nowMs: number): Promise<void> {
  // chmod, truncate and utimes follow symbolic links: a link is never changed (nor what it points to).
  if (st.isSymbolicLink()) throw new NfsError(NFS3ERR_INVAL, 'a symbolic link has no attributes to set');
  if (set.size !== undefined) await truncate(path, set.size);
  if (set.mode !== undefined) await chmod(path, set.mode & PERMISSION_BITS);
  if (set.atime !== undefined || set.mtime !== undefined) {
    const t = (v: SetAttr['atime'], cur: bigint): Date => new Date(v === undefined ? Number(cur) : v === 'server' ? nowMs : v);
    await utimes(path, t(set.atime, st.atimeMs), t(set.mtime, st.mtimeMs));
  }
}

export async function readRealFile(path: string, offset: number, count: number): Promise<Buffer> {
  const fh = await open(path, fsc.O_RDONLY | NO_FOLLOW);
  try {
    const buf = Buffer.alloc(count);
    const { bytesRead } = await fh.read(buf, 0, count, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function writeRealFile(path: string, offset: number, data: Buffer, stable: boolean): Promise<void> {
  const fh = await open(path, fsc.O_RDWR | NO_FOLLOW);
  try {
    await fh.write(data, 0, data.length, offset);
    if (stable) await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function syncRealFile(path: string): Promise<void> {
  const fh = await open(path, fsc.O_RDONLY | NO_FOLLOW);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** An EXCLUSIVE create's verifier, kept in the file's times (RFC 1813 §3.3.8). */
function verifierTime(verifier: Buffer): number {
  return verifier.readUInt32BE(0) % 2 ** 31;
}

/**
 * CREATE of a real file. Returns false when nothing was created: a
 * retransmitted EXCLUSIVE create with the same verifier (success, the file is
 * the one made before).
 */
export async function createRealFile(path: string, how: CreateHow): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, how.mode === 'unchecked' ? fsc.O_RDWR | fsc.O_CREAT | NO_FOLLOW : fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || how.mode !== 'exclusive') throw err;
    const st = await lstat(path);
    if (Math.floor(st.mtimeMs / 1000) !== verifierTime(how.verifier)) throw new NfsError(NFS3ERR_EXIST);
    return false;
  }
  try {
    if (how.mode === 'exclusive') {
      const t = new Date(verifierTime(how.verifier) * 1000);
      await fh.utimes(t, t);
    } else {
      if (how.attrs.size !== undefined) await fh.truncate(how.attrs.size);
      if (how.attrs.mode !== undefined) await fh.chmod(how.attrs.mode & PERMISSION_BITS);
    }
  } finally {
    await fh.close();
  }
  return true;
}

/** MKDIR of a real folder, with permission bits only. */
export async function makeRealDir(path: string, mode: number | undefined): Promise<void> {
  await mkdir(path, { mode: 0o700 });
  // chmod, not mkdir's mode: mkdir keeps the sticky bit and inherits setgid from the parent.
  await chmod(path, (mode ?? 0o755) & PERMISSION_BITS);
}
