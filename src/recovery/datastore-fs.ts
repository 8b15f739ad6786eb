import { open, lstat, mkdir, readdir, rename, rmdir, statfs, truncate, unlink, utimes, chmod, type FileHandle } from 'node:fs/promises';
import { constants as fsc, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { BlockDevice } from '../blockdev/block-device.js';
import type { Clock } from '../core/clock.js';
import {
  NFS3ERR_ACCES,
  NFS3ERR_BADHANDLE,
  NFS3ERR_EXIST,
  NFS3ERR_INVAL,
  NFS3ERR_ISDIR,
  NFS3ERR_NOENT,
  NFS3ERR_NOTDIR,
  NFS3ERR_STALE,
  NFS3ERR_XDEV,
  NfsError,
  type CreateHow,
  type DirEntry,
  type FsStat,
  type NfsAttr,
  type NfsFileSystem,
  type SetAttr,
} from '../nfs/index.js';

/** A disk of a session: its overlay device and what the datastore shows. */
export interface DatastoreDisk {
  readonly name: string;
  readonly device: BlockDevice;
  /** Bytes held (backup blocks + overlay), for `used`. */
  allocatedBytes(): number;
  mtimeMs: number;
}

export interface DatastoreSession {
  readonly id: string; // uuid
  readonly name: string;
  /** Real files of the session (descriptors, .vmx, whatever the hypervisor creates). */
  readonly filesDir: string;
  readonly disks: readonly DatastoreDisk[];
  readonly createdMs: number;
}

const KIND_ROOT = 1;
const KIND_SESSION = 2;
const KIND_DISK = 3;
const KIND_FILE = 4;
const HANDLE_VERSION = 1;
const VIRTUAL = 1n << 63n;
/**
 * The only mode bits a client may set: the server runs as root when it serves
 * port 111, so a setuid, setgid or sticky bit set through NFS would make a
 * session file run as root on the host.
 */
const PERMISSION_BITS = 0o777;
const SET_ID_AND_STICKY = 0o7000;
/** Opening a session file never follows a symbolic link out of the session folder. */
const NO_FOLLOW = fsc.O_NOFOLLOW;

interface Live {
  readonly s: DatastoreSession;
  readonly key: Buffer; // 16 bytes of the session uuid
  /** inode → path relative to filesDir ('' is filesDir itself). */
  paths: Map<bigint, string>;
}

/**
 * The vPower-style datastore as an NfsFileSystem: export /lifeboat, one
 * folder per session. Handles (26 bytes: version, kind, session uuid, disk
 * index or inode) and fileids come from identities that outlive the server
 * process, so a hypervisor that stays mounted across a restart keeps working.
 */
export class DatastoreFileSystem implements NfsFileSystem {
  private readonly sessions = new Map<string, Live>(); // by uuid hex
  private rootMtimeMs: number;

  constructor(
    readonly exportPath: string,
    private readonly spaceDir: string,
    private readonly clock: Clock,
  ) {
    this.rootMtimeMs = clock.now().getTime();
  }

  async addSession(s: DatastoreSession): Promise<void> {
    await mkdir(s.filesDir, { recursive: true });
    const live: Live = { s, key: Buffer.from(s.id.replace(/-/g, ''), 'hex'), paths: new Map() };
    await this.rescan(live);
    this.sessions.set(live.key.toString('hex'), live);
    this.rootMtimeMs = this.clock.now().getTime();
  }

  removeSession(id: string): void {
    this.sessions.delete(id.replace(/-/g, ''));
    this.rootMtimeMs = this.clock.now().getTime();
  }

  private async rescan(live: Live): Promise<void> {
    const paths = new Map<bigint, string>();
    const walk = async (rel: string): Promise<void> => {
      const path = join(live.s.filesDir, rel);
      const st = await lstat(path, { bigint: true });
      paths.set(st.ino, rel);
      // Left by an older server, or by hand: a session file is never set-id.
      if ((st.isFile() || st.isDirectory()) && (Number(st.mode) & SET_ID_AND_STICKY) !== 0) await chmod(path, Number(st.mode) & PERMISSION_BITS);
      if (!st.isDirectory()) return;
      for (const n of await readdir(join(live.s.filesDir, rel))) await walk(rel === '' ? n : `${rel}/${n}`);
    };
    await walk('');
    live.paths = paths;
  }

  // ---- handles ----

  private handle(kind: number, key: Buffer | undefined, id: bigint): Buffer {
    const h = Buffer.alloc(26);
    h[0] = HANDLE_VERSION;
    h[1] = kind;
    key?.copy(h, 2);
    h.writeBigUInt64BE(id, 18);
    return h;
  }

  private decode(h: Buffer): { kind: number; live?: Live; id: bigint } {
    if (h.length !== 26 || h[0] !== HANDLE_VERSION || h[1]! < KIND_ROOT || h[1]! > KIND_FILE) throw new NfsError(NFS3ERR_BADHANDLE);
    const kind = h[1]!;
    const id = h.readBigUInt64BE(18);
    if (kind === KIND_ROOT) return { kind, id };
    const live = this.sessions.get(h.subarray(2, 18).toString('hex'));
    if (!live) throw new NfsError(NFS3ERR_STALE, 'no such session (stopped)');
    if (kind === KIND_DISK && Number(id) >= live.s.disks.length) throw new NfsError(NFS3ERR_STALE);
    return { kind, live, id };
  }

  /** Path of a real file or directory from its handle; STALE if it is gone. */
  private async realPath(live: Live, ino: bigint): Promise<{ path: string; rel: string; st: BigIntStats }> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const rel = live.paths.get(ino);
      if (rel !== undefined) {
        const path = join(live.s.filesDir, rel);
        try {
          // One lstat: bigint, for the exact inode (GETATTR of lock files is ESXi's heartbeat).
          const st = await lstat(path, { bigint: true });
          if (st.ino === ino) return { path, rel, st };
        } catch {
          /* moved or gone: rescan once */
        }
      }
      await this.rescan(live);
    }
    throw new NfsError(NFS3ERR_STALE);
  }

  private sessionFileid(live: Live): bigint {
    return VIRTUAL | ((live.key.readBigUInt64BE(0) >> 8n) << 8n);
  }

  // ---- NfsFileSystem ----

  exports(): readonly string[] {
    return [this.exportPath];
  }

  mount(path: string): Buffer | undefined {
    return path === this.exportPath ? this.handle(KIND_ROOT, undefined, 0n) : undefined;
  }

  async getattr(h: Buffer): Promise<NfsAttr> {
    const d = this.decode(h);
    const dirAttr = (fileid: bigint, ms: number): NfsAttr => ({
      type: 'dir',
      mode: 0o755,
      nlink: 2,
      uid: 0,
      gid: 0,
      size: 4096,
      used: 4096,
      fileid,
      atimeMs: ms,
      mtimeMs: ms,
      ctimeMs: ms,
    });
    if (d.kind === KIND_ROOT) return dirAttr(1n, this.rootMtimeMs);
    const live = d.live!;
    if (d.kind === KIND_SESSION) {
      const st = await lstat(live.s.filesDir);
      return dirAttr(this.sessionFileid(live), Math.max(st.mtimeMs, live.s.createdMs));
    }
    if (d.kind === KIND_DISK) {
      const disk = live.s.disks[Number(d.id)]!;
      return {
        type: 'file',
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: disk.device.size,
        used: disk.allocatedBytes(),
        fileid: this.sessionFileid(live) + d.id + 1n,
        atimeMs: disk.mtimeMs,
        mtimeMs: disk.mtimeMs,
        ctimeMs: disk.mtimeMs,
      };
    }
    const { st } = await this.realPath(live, d.id);
    return {
      type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
      mode: Number(st.mode) & 0o7777,
      nlink: Number(st.nlink),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      used: Number(st.blocks) * 512,
      fileid: d.id,
      atimeMs: Number(st.atimeMs),
      mtimeMs: Number(st.mtimeMs),
      ctimeMs: Number(st.ctimeMs),
    };
  }

  async setattr(h: Buffer, set: SetAttr): Promise<void> {
    const d = this.decode(h);
    if (d.kind === KIND_ROOT || d.kind === KIND_SESSION) return;
    if (d.kind === KIND_DISK) {
      // The disk's size is the backup's; times are accepted and ignored.
      if (set.size !== undefined && set.size !== d.live!.s.disks[Number(d.id)]!.device.size)
        throw new NfsError(NFS3ERR_INVAL, 'a recovered disk cannot be resized');
      return;
    }
    const { path, st } = await this.realPath(d.live!, d.id);
    // chmod, truncate and utimes follow symbolic links: a link is never changed (nor what it points to).
    if (st.isSymbolicLink()) throw new NfsError(NFS3ERR_INVAL, 'a symbolic link has no attributes to set');
    if (set.size !== undefined) await truncate(path, set.size);
    if (set.mode !== undefined) await chmod(path, set.mode & PERMISSION_BITS);
    if (set.atime !== undefined || set.mtime !== undefined) {
      const st = await lstat(path);
      const t = (v: SetAttr['atime'], cur: number): Date => new Date(v === undefined ? cur : v === 'server' ? this.clock.now().getTime() : v);
      await utimes(path, t(set.atime, st.atimeMs), t(set.mtime, st.mtimeMs));
    }
  }

  /** The directory a handle names, as (session, relative path) or the root. */
  private async dirOf(h: Buffer): Promise<{ root: true } | { root: false; live: Live; rel: string }> {
    const d = this.decode(h);
    if (d.kind === KIND_ROOT) return { root: true };
    if (d.kind === KIND_SESSION) return { root: false, live: d.live!, rel: '' };
    if (d.kind === KIND_DISK) throw new NfsError(NFS3ERR_NOTDIR);
    const { rel, st } = await this.realPath(d.live!, d.id);
    if (!st.isDirectory()) throw new NfsError(NFS3ERR_NOTDIR);
    return { root: false, live: d.live!, rel };
  }

  private diskIndex(live: Live, rel: string, name: string): number {
    return rel === '' ? live.s.disks.findIndex((x) => `${x.name}-flat.vmdk` === name) : -1;
  }

  private async realHandle(live: Live, rel: string): Promise<Buffer> {
    const st = await lstat(join(live.s.filesDir, rel), { bigint: true });
    live.paths.set(st.ino, rel);
    return this.handle(rel === '' ? KIND_SESSION : KIND_FILE, live.key, rel === '' ? 0n : st.ino);
  }

  async lookup(dir: Buffer, name: string): Promise<Buffer> {
    const at = await this.dirOf(dir);
    if (at.root) {
      if (name === '.' || name === '..') return this.handle(KIND_ROOT, undefined, 0n);
      const live = [...this.sessions.values()].find((l) => l.s.name === name);
      if (!live) throw new NfsError(NFS3ERR_NOENT);
      return this.handle(KIND_SESSION, live.key, 0n);
    }
    const { live, rel } = at;
    if (name === '.') return dir;
    if (name === '..')
      return rel === '' ? this.handle(KIND_ROOT, undefined, 0n) : this.realHandle(live, rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
    const di = this.diskIndex(live, rel, name);
    if (di >= 0) return this.handle(KIND_DISK, live.key, BigInt(di));
    const child = rel === '' ? name : `${rel}/${name}`;
    try {
      return await this.realHandle(live, child);
    } catch {
      throw new NfsError(NFS3ERR_NOENT);
    }
  }

  async readlink(): Promise<string> {
    throw new NfsError(NFS3ERR_INVAL);
  }

  async read(h: Buffer, offset: number, count: number): Promise<Buffer> {
    const d = this.decode(h);
    if (d.kind === KIND_DISK) {
      const dev = d.live!.s.disks[Number(d.id)]!.device;
      const n = Math.max(0, Math.min(count, dev.size - offset));
      return dev.read(offset, n);
    }
    if (d.kind !== KIND_FILE) throw new NfsError(NFS3ERR_ISDIR);
    const { path } = await this.realPath(d.live!, d.id);
    const fh = await open(path, fsc.O_RDONLY | NO_FOLLOW);
    try {
      const buf = Buffer.alloc(count);
      const { bytesRead } = await fh.read(buf, 0, count, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  async write(h: Buffer, offset: number, data: Buffer, stable: boolean): Promise<void> {
    const d = this.decode(h);
    if (d.kind === KIND_DISK) {
      const disk = d.live!.s.disks[Number(d.id)]!;
      if (offset + data.length > disk.device.size) throw new NfsError(NFS3ERR_INVAL, 'write past the end of a recovered disk');
      await disk.device.write(offset, data);
      disk.mtimeMs = this.clock.now().getTime();
      if (stable) await disk.device.flush();
      return;
    }
    if (d.kind !== KIND_FILE) throw new NfsError(NFS3ERR_ISDIR);
    const { path } = await this.realPath(d.live!, d.id);
    const fh = await open(path, fsc.O_RDWR | NO_FOLLOW);
    try {
      await fh.write(data, 0, data.length, offset);
      if (stable) await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async commit(h: Buffer): Promise<void> {
    const d = this.decode(h);
    if (d.kind === KIND_DISK) return d.live!.s.disks[Number(d.id)]!.device.flush();
    if (d.kind !== KIND_FILE) return;
    const { path, st } = await this.realPath(d.live!, d.id);
    if (!st.isFile()) return;
    const fh = await open(path, fsc.O_RDONLY | NO_FOLLOW);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  private async inSession(dir: Buffer, name: string): Promise<{ live: Live; rel: string; path: string }> {
    const at = await this.dirOf(dir);
    if (at.root) throw new NfsError(NFS3ERR_ACCES, 'sessions are made with `lifeboat instant start`');
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_EXIST);
    const rel = at.rel === '' ? name : `${at.rel}/${name}`;
    return { live: at.live, rel, path: join(at.live.s.filesDir, rel) };
  }

  async create(dir: Buffer, name: string, how: CreateHow): Promise<Buffer> {
    const { live, rel, path } = await this.inSession(dir, name);
    let fh: FileHandle;
    try {
      fh = await open(path, how.mode === 'unchecked' ? fsc.O_RDWR | fsc.O_CREAT | NO_FOLLOW : fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || how.mode !== 'exclusive') throw err;
      // A retransmitted EXCLUSIVE create: same verifier (kept in the times) → success.
      const st = await lstat(path);
      if (Math.floor(st.mtimeMs / 1000) !== how.verifier.readUInt32BE(0) % 2 ** 31) throw new NfsError(NFS3ERR_EXIST);
      return this.realHandle(live, rel);
    }
    try {
      if (how.mode === 'exclusive') {
        const t = new Date((how.verifier.readUInt32BE(0) % 2 ** 31) * 1000);
        await fh.utimes(t, t);
      } else {
        if (how.attrs.size !== undefined) await fh.truncate(how.attrs.size);
        if (how.attrs.mode !== undefined) await fh.chmod(how.attrs.mode & PERMISSION_BITS);
      }
    } finally {
      await fh.close();
    }
    return this.realHandle(live, rel);
  }

  async mkdir(dir: Buffer, name: string, attrs: SetAttr): Promise<Buffer> {
    const { live, rel, path } = await this.inSession(dir, name);
    await mkdir(path, { mode: 0o700 });
    // chmod, not mkdir's mode: mkdir keeps the sticky bit and inherits setgid from the parent.
    await chmod(path, (attrs.mode ?? 0o755) & PERMISSION_BITS);
    return this.realHandle(live, rel);
  }

  async remove(dir: Buffer, name: string): Promise<void> {
    const at = await this.dirOf(dir);
    if (at.root) throw new NfsError(NFS3ERR_ACCES, 'stop a session with `lifeboat instant stop`');
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_ACCES, 'a recovered disk cannot be removed');
    const path = join(at.live.s.filesDir, at.rel === '' ? name : `${at.rel}/${name}`);
    const st = await lstat(path).catch(() => undefined);
    if (!st) throw new NfsError(NFS3ERR_NOENT);
    if (st.isDirectory()) throw new NfsError(NFS3ERR_ISDIR);
    await unlink(path);
  }

  async rmdir(dir: Buffer, name: string): Promise<void> {
    const at = await this.dirOf(dir);
    if (at.root) throw new NfsError(NFS3ERR_ACCES);
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_NOTDIR);
    await rmdir(join(at.live.s.filesDir, at.rel === '' ? name : `${at.rel}/${name}`));
  }

  async rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<void> {
    const from = await this.dirOf(fromDir);
    const to = await this.dirOf(toDir);
    if (from.root || to.root) throw new NfsError(NFS3ERR_ACCES);
    if (from.live !== to.live) throw new NfsError(NFS3ERR_XDEV);
    if (this.diskIndex(from.live, from.rel, fromName) >= 0 || this.diskIndex(to.live, to.rel, toName) >= 0)
      throw new NfsError(NFS3ERR_ACCES, 'recovered disks keep their names');
    const src = join(from.live.s.filesDir, from.rel === '' ? fromName : `${from.rel}/${fromName}`);
    const dst = join(to.live.s.filesDir, to.rel === '' ? toName : `${to.rel}/${toName}`);
    await rename(src, dst);
    await this.rescan(from.live); // paths below a renamed folder changed
  }

  async readdir(dir: Buffer): Promise<readonly DirEntry[]> {
    const at = await this.dirOf(dir);
    if (at.root)
      return [...this.sessions.values()].sort((a, b) => (a.s.name < b.s.name ? -1 : 1)).map((l) => ({ name: l.s.name, fileid: this.sessionFileid(l) }));
    const { live, rel } = at;
    const out: DirEntry[] = rel === '' ? live.s.disks.map((d, i) => ({ name: `${d.name}-flat.vmdk`, fileid: this.sessionFileid(live) + BigInt(i) + 1n })) : [];
    for (const n of (await readdir(join(live.s.filesDir, rel))).sort()) {
      const childRel = rel === '' ? n : `${rel}/${n}`;
      const st = await lstat(join(live.s.filesDir, childRel), { bigint: true }).catch(() => undefined);
      if (!st) continue;
      live.paths.set(st.ino, childRel);
      out.push({ name: n, fileid: st.ino });
    }
    return out;
  }

  async fsstat(h: Buffer): Promise<FsStat> {
    const d = this.decode(h);
    const s = await statfs(d.live ? d.live.s.filesDir : this.spaceDir);
    return { tbytes: s.blocks * s.bsize, fbytes: s.bfree * s.bsize, abytes: s.bavail * s.bsize, tfiles: s.files, ffiles: s.ffree, afiles: s.ffree };
  }
}
