import { lstat, mkdir, readdir, rename, rmdir, statfs, unlink } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { BlockDevice } from '../blockdev/block-device.js';
import type { Clock } from '../core/clock.js';
import { unpinned, type PinnedBytes } from '../core/pinned-bytes.js';
import {
  NFS3ERR_ACCES,
  NFS3ERR_EXIST,
  NFS3ERR_FBIG,
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
import { KIND_DISK, KIND_FILE, KIND_ROOT, KIND_SESSION, childRel, encodeHandle, parseHandle, sessionFileid } from './datastore-handles.js';
import { createRealFile, makeRealDir, readRealFile, realAttr, setRealAttrs, syncRealFile, virtualDirAttr, writeRealFile } from './datastore-files.js';
import { SessionIndex, type Located } from './datastore-index.js';
import { mapLimited } from '../core/map-limited.js';
import { ListingCache } from './datastore-listing.js';

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

/** Costs a client can cause, bounded (see ListingCache and SessionIndex). */
const LISTING_IDLE_MS = 5_000;
const LISTING_MAX_AGE_MS = 60_000;
const LISTING_MAX_FOLDERS = 64;
const LISTING_MAX_ENTRIES = 200_000;
const RESCAN_INTERVAL_MS = 5_000;
/** lstat calls in flight while a folder is listed. */
const LIST_CONCURRENCY = 16;

export interface DatastoreFsOptions {
  /** Monotonic milliseconds (performance.now() by default): the listing cache's age and the rescan rate limit. */
  readonly monotonicMs?: () => number;
}

interface Live {
  readonly s: DatastoreSession;
  readonly key: Buffer; // 16 bytes of the session uuid
  /** inode → path relative to filesDir ('' is filesDir itself). */
  readonly index: SessionIndex;
}

/** A real folder of a session: where it is and its lstat (inode, times for the listing cache). */
interface RealDir {
  readonly root: false;
  readonly live: Live;
  readonly rel: string;
  readonly path: string;
  readonly st: BigIntStats;
}

/**
 * The vPower-style datastore as an NfsFileSystem: export /lifeboat, one
 * folder per session with the session's disks (virtual files over their
 * overlays) and the real files the hypervisor creates. Handles: see
 * datastore-handles.ts.
 */
export class DatastoreFileSystem implements NfsFileSystem {
  private readonly sessions = new Map<string, Live>(); // by uuid hex
  private rootMtimeMs: number;
  private rootListing: readonly DirEntry[] | undefined;
  private readonly listings: ListingCache;
  private readonly monotonicMs: () => number;

  constructor(
    readonly exportPath: string,
    private readonly spaceDir: string,
    private readonly clock: Clock,
    opts: DatastoreFsOptions = {},
  ) {
    this.rootMtimeMs = clock.now().getTime();
    this.monotonicMs = opts.monotonicMs ?? (() => performance.now());
    this.listings = new ListingCache({
      maxFolders: LISTING_MAX_FOLDERS,
      maxEntries: LISTING_MAX_ENTRIES,
      idleMs: LISTING_IDLE_MS,
      maxAgeMs: LISTING_MAX_AGE_MS,
      monotonicMs: this.monotonicMs,
    });
  }

  async addSession(s: DatastoreSession): Promise<void> {
    await mkdir(s.filesDir, { recursive: true });
    const index = new SessionIndex(s.filesDir, { rescanIntervalMs: RESCAN_INTERVAL_MS, monotonicMs: this.monotonicMs });
    const live: Live = { s, key: Buffer.from(s.id.replace(/-/g, ''), 'hex'), index };
    await index.rescan();
    this.listings.dropPrefix(live.key.toString('hex'));
    this.sessions.set(live.key.toString('hex'), live);
    this.rootListing = undefined;
    this.rootMtimeMs = this.clock.now().getTime();
  }

  removeSession(id: string): void {
    const key = id.replace(/-/g, '');
    this.sessions.delete(key);
    this.listings.dropPrefix(key);
    this.rootListing = undefined;
    this.rootMtimeMs = this.clock.now().getTime();
  }

  // ---- handles ----

  private decode(h: Buffer): { kind: number; live?: Live; id: bigint } {
    const { kind, sessionKey, id } = parseHandle(h);
    if (kind === KIND_ROOT) return { kind, id };
    const live = this.sessions.get(sessionKey);
    if (!live) throw new NfsError(NFS3ERR_STALE, 'no such session (stopped)');
    if (kind === KIND_DISK && id >= BigInt(live.s.disks.length)) throw new NfsError(NFS3ERR_STALE);
    return { kind, live, id };
  }

  /** Path of a real file or directory from its handle; STALE if it is gone. */
  private async realPath(live: Live, ino: bigint): Promise<Located> {
    const found = await live.index.locate(ino);
    if (!found) throw new NfsError(NFS3ERR_STALE);
    return found;
  }

  // ---- NfsFileSystem ----

  exports(): readonly string[] {
    return [this.exportPath];
  }

  mount(path: string): Buffer | undefined {
    return path === this.exportPath ? encodeHandle(KIND_ROOT, undefined, 0n) : undefined;
  }

  async getattr(h: Buffer): Promise<NfsAttr> {
    const d = this.decode(h);
    if (d.kind === KIND_ROOT) return virtualDirAttr(1n, this.rootMtimeMs);
    const live = d.live!;
    if (d.kind === KIND_SESSION) {
      const st = await lstat(live.s.filesDir);
      return virtualDirAttr(sessionFileid(live.key), Math.max(st.mtimeMs, live.s.createdMs));
    }
    if (d.kind === KIND_DISK) {
      const disk = live.s.disks[Number(d.id)]!;
      const ms = disk.mtimeMs;
      const fileid = sessionFileid(live.key) + d.id + 1n;
      return {
        type: 'file',
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: disk.device.size,
        used: disk.allocatedBytes(),
        fileid,
        atimeMs: ms,
        mtimeMs: ms,
        ctimeMs: ms,
      };
    }
    return realAttr((await this.realPath(live, d.id)).st);
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
    await setRealAttrs(path, st, set, this.clock.now().getTime());
  }

  /** The directory a handle names, as a real folder of a session or the root. */
  private async dirOf(h: Buffer): Promise<{ root: true } | RealDir> {
    const d = this.decode(h);
    if (d.kind === KIND_ROOT) return { root: true };
    if (d.kind === KIND_DISK) throw new NfsError(NFS3ERR_NOTDIR);
    const live = d.live!;
    if (d.kind === KIND_SESSION) {
      const path = live.s.filesDir;
      return { root: false, live, rel: '', path, st: await lstat(path, { bigint: true }) };
    }
    const { rel, path, st } = await this.realPath(live, d.id);
    if (!st.isDirectory()) throw new NfsError(NFS3ERR_NOTDIR);
    return { root: false, live, rel, path, st };
  }

  /** A real folder of a session (not the root): where names are created, removed and renamed. */
  private async sessionDirOf(h: Buffer, why: string): Promise<RealDir> {
    const at = await this.dirOf(h);
    if (at.root) throw new NfsError(NFS3ERR_ACCES, why);
    return at;
  }

  private diskIndex(live: Live, rel: string, name: string): number {
    return rel === '' ? live.s.disks.findIndex((x) => `${x.name}-flat.vmdk` === name) : -1;
  }

  private fileHandle(live: Live, ino: bigint): Buffer {
    return encodeHandle(KIND_FILE, live.key, ino);
  }

  private async realHandle(live: Live, rel: string): Promise<Buffer> {
    const st = await lstat(join(live.s.filesDir, rel), { bigint: true });
    live.index.remember(st.ino, rel);
    return rel === '' ? encodeHandle(KIND_SESSION, live.key, 0n) : this.fileHandle(live, st.ino);
  }

  /** The listing cache's key of a real folder. */
  private listingKey(dir: RealDir): string {
    return `${dir.live.key.toString('hex')}/${dir.st.ino}`;
  }

  /** The folder changed through us: its listing is made anew on the next READDIR. */
  private changed(dir: RealDir): void {
    this.listings.drop(this.listingKey(dir));
  }

  async lookup(dir: Buffer, name: string): Promise<Buffer> {
    const at = await this.dirOf(dir);
    if (at.root) {
      if (name === '.' || name === '..') return encodeHandle(KIND_ROOT, undefined, 0n);
      const live = [...this.sessions.values()].find((l) => l.s.name === name);
      if (!live) throw new NfsError(NFS3ERR_NOENT);
      return encodeHandle(KIND_SESSION, live.key, 0n);
    }
    const { live, rel } = at;
    if (name === '.') return dir;
    if (name === '..')
      return rel === '' ? encodeHandle(KIND_ROOT, undefined, 0n) : this.realHandle(live, rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
    const di = this.diskIndex(live, rel, name);
    if (di >= 0) return encodeHandle(KIND_DISK, live.key, BigInt(di));
    const child = childRel(rel, name);
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
    return readRealFile((await this.realPath(d.live!, d.id)).path, offset, count);
  }

  /** As read; a disk's bytes are lent by its overlay (a block of the memory cache, until the reply is sent). */
  async readPinned(h: Buffer, offset: number, count: number): Promise<PinnedBytes> {
    const d = this.decode(h);
    if (d.kind !== KIND_DISK) return unpinned(await this.read(h, offset, count));
    const dev = d.live!.s.disks[Number(d.id)]!.device;
    const n = Math.max(0, Math.min(count, dev.size - offset));
    return dev.readPinned ? dev.readPinned(offset, n) : unpinned(await dev.read(offset, n));
  }

  async write(h: Buffer, offset: number, data: Buffer, stable: boolean): Promise<void> {
    const d = this.decode(h);
    if (d.kind === KIND_DISK) {
      const disk = d.live!.s.disks[Number(d.id)]!;
      if (offset + data.length > disk.device.size) throw new NfsError(NFS3ERR_FBIG, 'write past the end of a recovered disk');
      await disk.device.write(offset, data);
      disk.mtimeMs = this.clock.now().getTime();
      if (stable) await disk.device.flush();
      return;
    }
    if (d.kind !== KIND_FILE) throw new NfsError(NFS3ERR_ISDIR);
    await writeRealFile((await this.realPath(d.live!, d.id)).path, offset, data, stable);
  }

  async commit(h: Buffer): Promise<void> {
    const d = this.decode(h);
    if (d.kind === KIND_DISK) return d.live!.s.disks[Number(d.id)]!.device.flush();
    if (d.kind !== KIND_FILE) return;
    const { path, st } = await this.realPath(d.live!, d.id);
    if (st.isFile()) await syncRealFile(path);
  }

  private async inSession(dir: Buffer, name: string): Promise<{ at: RealDir; rel: string; path: string }> {
    const at = await this.sessionDirOf(dir, 'sessions are made with `lifeboat instant start`');
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_EXIST);
    const rel = childRel(at.rel, name);
    return { at, rel, path: join(at.live.s.filesDir, rel) };
  }

  async create(dir: Buffer, name: string, how: CreateHow): Promise<Buffer> {
    const { at, rel, path } = await this.inSession(dir, name);
    if (await createRealFile(path, how)) this.changed(at);
    return this.realHandle(at.live, rel);
  }

  async mkdir(dir: Buffer, name: string, attrs: SetAttr): Promise<Buffer> {
    const { at, rel, path } = await this.inSession(dir, name);
    await makeRealDir(path, attrs.mode);
    this.changed(at);
    return this.realHandle(at.live, rel);
  }

  async remove(dir: Buffer, name: string): Promise<void> {
    const at = await this.sessionDirOf(dir, 'stop a session with `lifeboat instant stop`');
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_ACCES, 'a recovered disk cannot be removed');
    const path = join(at.live.s.filesDir, childRel(at.rel, name));
    const st = await lstat(path, { bigint: true }).catch(() => undefined);
    if (!st) throw new NfsError(NFS3ERR_NOENT);
    if (st.isDirectory()) throw new NfsError(NFS3ERR_ISDIR);
    await unlink(path);
    this.changed(at);
    at.live.index.forget(st.ino);
  }

  async rmdir(dir: Buffer, name: string): Promise<void> {
    const at = await this.sessionDirOf(dir, 'stop a session with `lifeboat instant stop`');
    if (this.diskIndex(at.live, at.rel, name) >= 0) throw new NfsError(NFS3ERR_NOTDIR);
    const path = join(at.live.s.filesDir, childRel(at.rel, name));
    const st = await lstat(path, { bigint: true });
    await rmdir(path);
    this.changed(at);
    at.live.index.forget(st.ino);
  }

  async rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<void> {
    const from = await this.sessionDirOf(fromDir, 'sessions keep their names');
    const to = await this.sessionDirOf(toDir, 'sessions keep their names');
    if (from.live !== to.live) throw new NfsError(NFS3ERR_XDEV);
    if (this.diskIndex(from.live, from.rel, fromName) >= 0 || this.diskIndex(to.live, to.rel, toName) >= 0)
      throw new NfsError(NFS3ERR_ACCES, 'recovered disks keep their names');
    const srcRel = childRel(from.rel, fromName);
    const dstRel = childRel(to.rel, toName);
    const src = join(from.live.s.filesDir, srcRel);
    const dst = join(to.live.s.filesDir, dstRel);
    const moving = await lstat(src, { bigint: true });
    const replaced = await lstat(dst, { bigint: true }).catch(() => undefined);
    await rename(src, dst);
    this.changed(from);
    this.changed(to);
    const index = from.live.index;
    if (replaced && replaced.ino !== moving.ino) index.forget(replaced.ino);
    // Everything below a renamed folder moves along in the index: no rescan.
    index.moved(moving.ino, srcRel, dstRel, moving.isDirectory());
  }

  async readdir(dir: Buffer): Promise<readonly DirEntry[]> {
    const at = await this.dirOf(dir);
    if (at.root) {
      this.rootListing ??= [...this.sessions.values()].map((l) => ({
        name: l.s.name,
        fileid: sessionFileid(l.key),
        handle: encodeHandle(KIND_SESSION, l.key, 0n),
      }));
      return this.rootListing;
    }
    // One listing per folder version, kept a short time: paging through a big folder lists it once.
    const key = this.listingKey(at);
    const version = `${at.st.mtimeNs}/${at.st.ctimeNs}`;
    const kept = this.listings.get(key, version);
    if (kept) return kept;
    const { live, rel, path } = at;
    const out: DirEntry[] =
      rel === ''
        ? live.s.disks.map((d, i) => ({
            name: `${d.name}-flat.vmdk`,
            fileid: sessionFileid(live.key) + BigInt(i) + 1n,
            handle: encodeHandle(KIND_DISK, live.key, BigInt(i)),
          }))
        : [];
    const names = await readdir(path);
    const stats = await mapLimited(names, LIST_CONCURRENCY, (n) => lstat(join(path, n), { bigint: true }).catch(() => undefined));
    names.forEach((n, i) => {
      const st = stats[i];
      if (!st) return; // removed meanwhile
      live.index.remember(st.ino, childRel(rel, n));
      out.push({ name: n, fileid: st.ino, handle: this.fileHandle(live, st.ino) });
    });
    this.listings.set(key, version, out);
    return out;
  }

  async fsstat(h: Buffer): Promise<FsStat> {
    const d = this.decode(h);
    const s = await statfs(d.live ? d.live.s.filesDir : this.spaceDir);
    return { tbytes: s.blocks * s.bsize, fbytes: s.bfree * s.bsize, abytes: s.bavail * s.bsize, tfiles: s.files, ffiles: s.ffree, afiles: s.ffree };
  }
}
