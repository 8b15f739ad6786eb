import type { PinnedBytes } from '../core/pinned-bytes.js';

/**
 * What the NFS server serves: a small file system interface (go-nfs's
 * billy.Filesystem, reduced). The server validates the wire; the file system
 * owns its handles (opaque, ≤ 56 bytes, stable across restarts) and throws
 * NfsError for BADHANDLE, STALE, NOENT… The protocol never sees a backup.
 */
export const FILE_TYPES = ['file', 'dir', 'symlink'] as const;
export type FileType = (typeof FILE_TYPES)[number];

export interface NfsAttr {
  readonly type: FileType;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Bytes allocated (st_blocks × 512 for clients). */
  readonly used: number;
  readonly fileid: bigint;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export type TimeSet = 'server' | number;

export interface SetAttr {
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly size?: number;
  readonly atime?: TimeSet;
  readonly mtime?: TimeSet;
}

export type CreateHow = { readonly mode: 'unchecked' | 'guarded'; readonly attrs: SetAttr } | { readonly mode: 'exclusive'; readonly verifier: Buffer };

export interface DirEntry {
  readonly name: string;
  readonly fileid: bigint;
  /** The entry's handle, if the file system knows it while listing (READDIRPLUS then needs no LOOKUP). */
  readonly handle?: Buffer;
}

export interface FsStat {
  readonly tbytes: number;
  readonly fbytes: number;
  readonly abytes: number;
  readonly tfiles: number;
  readonly ffiles: number;
  readonly afiles: number;
}

export interface NfsFileSystem {
  /** Export paths offered by MOUNT (e.g. ["/lifeboat"]). */
  exports(): readonly string[];
  /** The root handle of an export, or undefined if no such export. */
  mount(path: string): Buffer | undefined;
  getattr(h: Buffer): Promise<NfsAttr>;
  setattr(h: Buffer, set: SetAttr): Promise<void>;
  /** `.` and `..` included. */
  lookup(dir: Buffer, name: string): Promise<Buffer>;
  readlink(h: Buffer): Promise<string>;
  read(h: Buffer, offset: number, count: number): Promise<Buffer>;
  /** As read, the bytes lent until release(), which the server calls once the reply is sent or dropped. */
  readPinned?(h: Buffer, offset: number, count: number): Promise<PinnedBytes>;
  /** stable: the data must be durable before this returns. */
  write(h: Buffer, offset: number, data: Buffer, stable: boolean): Promise<void>;
  commit(h: Buffer): Promise<void>;
  create(dir: Buffer, name: string, how: CreateHow): Promise<Buffer>;
  mkdir(dir: Buffer, name: string, attrs: SetAttr): Promise<Buffer>;
  remove(dir: Buffer, name: string): Promise<void>;
  rmdir(dir: Buffer, name: string): Promise<void>;
  rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<void>;
  /**
   * The whole listing, in any order, without `.`/`..`. Return the same array
   * object while the folder is unchanged: the server indexes a listing once
   * (by array identity) and then serves each page at the cost of that page.
   */
  readdir(dir: Buffer): Promise<readonly DirEntry[]>;
  fsstat(h: Buffer): Promise<FsStat>;
}
