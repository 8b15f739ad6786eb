import {
  NFS3ERR_BADHANDLE,
  NFS3ERR_EXIST,
  NFS3ERR_FBIG,
  NFS3ERR_INVAL,
  NFS3ERR_ISDIR,
  NFS3ERR_NOENT,
  NFS3ERR_NOTDIR,
  NFS3ERR_NOTEMPTY,
  NFS3ERR_STALE,
  NfsError,
} from '../nfs/nfs-errors.js';
import type { CreateHow, DirEntry, FsStat, NfsAttr, NfsFileSystem, SetAttr } from '../nfs/file-system.js';

interface Node {
  id: bigint;
  type: 'file' | 'dir';
  parent: bigint;
  data: Buffer;
  children: Map<string, bigint>;
  mode: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  verifier?: Buffer;
  /** The listing handed out while the folder is unchanged (the server indexes it once). */
  listing?: readonly DirEntry[];
}

/**
 * Test support: an in-memory NfsFileSystem, the reference the protocol tests
 * run against (the datastore of instant recovery implements the same
 * interface). Handles are a version byte and the node id: 9 bytes.
 */
export class MemoryFileSystem implements NfsFileSystem {
  private readonly nodes = new Map<bigint, Node>();
  private nextId = 2n;
  commits = 0;

  /**
   * @param maxFileBytes past it, FBIG (as a real file system answers past its
   *   limit): a hostile SETATTR size or WRITE offset tests the server, not how
   *   much memory the test double can allocate.
   */
  constructor(
    private readonly exportPath = '/export',
    private readonly maxFileBytes = 64 * 1024 * 1024,
  ) {
    this.nodes.set(1n, this.node(1n, 'dir', 1n));
  }

  private node(id: bigint, type: 'file' | 'dir', parent: bigint): Node {
    const now = Date.now();
    return {
      id,
      type,
      parent,
      data: Buffer.alloc(0),
      children: new Map(),
      mode: type === 'dir' ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      atimeMs: now,
      mtimeMs: now,
      ctimeMs: now,
    };
  }

  handle(id: bigint): Buffer {
    const h = Buffer.alloc(9);
    h[0] = 1;
    h.writeBigUInt64BE(id, 1);
    return h;
  }

  private get(h: Buffer): Node {
    if (h.length !== 9 || h[0] !== 1) throw new NfsError(NFS3ERR_BADHANDLE);
    const n = this.nodes.get(h.readBigUInt64BE(1));
    if (!n) throw new NfsError(NFS3ERR_STALE);
    return n;
  }

  private checkSize(size: number): void {
    if (size > this.maxFileBytes) throw new NfsError(NFS3ERR_FBIG, `files hold at most ${this.maxFileBytes} bytes`);
  }

  private dir(h: Buffer): Node {
    const n = this.get(h);
    if (n.type !== 'dir') throw new NfsError(NFS3ERR_NOTDIR);
    return n;
  }

  exports(): readonly string[] {
    return [this.exportPath];
  }

  mount(path: string): Buffer | undefined {
    return path === this.exportPath ? this.handle(1n) : undefined;
  }

  async getattr(h: Buffer): Promise<NfsAttr> {
    const n = this.get(h);
    return {
      type: n.type,
      mode: n.mode,
      nlink: n.type === 'dir' ? 2 : 1,
      uid: n.uid,
      gid: n.gid,
      size: n.data.length,
      used: n.data.length,
      fileid: n.id,
      atimeMs: n.atimeMs,
      mtimeMs: n.mtimeMs,
      ctimeMs: n.ctimeMs,
    };
  }

  async setattr(h: Buffer, s: SetAttr): Promise<void> {
    const n = this.get(h);
    if (s.size !== undefined) {
      if (n.type === 'dir') throw new NfsError(NFS3ERR_ISDIR);
      this.checkSize(s.size);
      const d = Buffer.alloc(s.size);
      n.data.copy(d, 0, 0, Math.min(s.size, n.data.length));
      n.data = d;
      n.mtimeMs = Date.now();
    }
    if (s.mode !== undefined) n.mode = s.mode & 0o777;
    if (s.uid !== undefined) n.uid = s.uid;
    if (s.gid !== undefined) n.gid = s.gid;
    if (s.atime !== undefined) n.atimeMs = s.atime === 'server' ? Date.now() : s.atime;
    if (s.mtime !== undefined) n.mtimeMs = s.mtime === 'server' ? Date.now() : s.mtime;
    n.ctimeMs = Date.now();
  }

  async lookup(dirH: Buffer, name: string): Promise<Buffer> {
    const d = this.dir(dirH);
    if (name === '.') return this.handle(d.id);
    if (name === '..') return this.handle(d.parent);
    const id = d.children.get(name);
    if (id === undefined) throw new NfsError(NFS3ERR_NOENT);
    return this.handle(id);
  }

  async readlink(): Promise<string> {
    throw new NfsError(NFS3ERR_INVAL);
  }

  async read(h: Buffer, offset: number, count: number): Promise<Buffer> {
    const n = this.get(h);
    return Buffer.from(n.data.subarray(offset, offset + count));
  }

  async write(h: Buffer, offset: number, data: Buffer): Promise<void> {
    const n = this.get(h);
    if (n.type === 'dir') throw new NfsError(NFS3ERR_ISDIR);
    this.checkSize(offset + data.length);
    if (offset + data.length > n.data.length) {
      const d = Buffer.alloc(offset + data.length);
      n.data.copy(d);
      n.data = d;
    }
    data.copy(n.data, offset);
    n.mtimeMs = n.ctimeMs = Date.now();
  }

  async commit(): Promise<void> {
    this.commits += 1;
  }

  private add(d: Node, name: string, type: 'file' | 'dir'): Node {
    const n = this.node(this.nextId++, type, d.id);
    this.nodes.set(n.id, n);
    d.children.set(name, n.id);
    d.listing = undefined;
    d.mtimeMs = d.ctimeMs = Date.now();
    return n;
  }

  async create(dirH: Buffer, name: string, how: CreateHow): Promise<Buffer> {
    const d = this.dir(dirH);
    const existing = d.children.get(name);
    if (existing !== undefined) {
      const e = this.nodes.get(existing)!;
      if (how.mode === 'guarded') throw new NfsError(NFS3ERR_EXIST);
      if (how.mode === 'exclusive' && !(e.verifier && e.verifier.equals(how.verifier))) throw new NfsError(NFS3ERR_EXIST);
      if (how.mode === 'unchecked' && how.attrs.size !== undefined) await this.setattr(this.handle(existing), { size: how.attrs.size });
      return this.handle(existing);
    }
    const n = this.add(d, name, 'file');
    if (how.mode === 'exclusive') n.verifier = how.verifier;
    else await this.setattr(this.handle(n.id), how.attrs);
    return this.handle(n.id);
  }

  async mkdir(dirH: Buffer, name: string, attrs: SetAttr): Promise<Buffer> {
    const d = this.dir(dirH);
    if (d.children.has(name)) throw new NfsError(NFS3ERR_EXIST);
    const n = this.add(d, name, 'dir');
    if (attrs.mode !== undefined) n.mode = attrs.mode & 0o777;
    return this.handle(n.id);
  }

  async remove(dirH: Buffer, name: string): Promise<void> {
    const d = this.dir(dirH);
    const id = d.children.get(name);
    if (id === undefined) throw new NfsError(NFS3ERR_NOENT);
    if (this.nodes.get(id)!.type === 'dir') throw new NfsError(NFS3ERR_ISDIR);
    d.children.delete(name);
    d.listing = undefined;
    this.nodes.delete(id);
  }

  async rmdir(dirH: Buffer, name: string): Promise<void> {
    const d = this.dir(dirH);
    const id = d.children.get(name);
    if (id === undefined) throw new NfsError(NFS3ERR_NOENT);
    const n = this.nodes.get(id)!;
    if (n.type !== 'dir') throw new NfsError(NFS3ERR_NOTDIR);
    if (n.children.size > 0) throw new NfsError(NFS3ERR_NOTEMPTY);
    d.children.delete(name);
    d.listing = undefined;
    this.nodes.delete(id);
  }

  async rename(fromH: Buffer, fromName: string, toH: Buffer, toName: string): Promise<void> {
    const from = this.dir(fromH);
    const to = this.dir(toH);
    const id = from.children.get(fromName);
    if (id === undefined) throw new NfsError(NFS3ERR_NOENT);
    const replaced = to.children.get(toName);
    if (replaced !== undefined && replaced !== id) this.nodes.delete(replaced);
    from.children.delete(fromName);
    to.children.set(toName, id);
    from.listing = to.listing = undefined;
    this.nodes.get(id)!.parent = to.id;
  }

  async readdir(dirH: Buffer): Promise<readonly DirEntry[]> {
    const d = this.dir(dirH);
    d.listing ??= [...d.children].map(([name, fileid]) => ({ name, fileid, handle: this.handle(fileid) }));
    return d.listing;
  }

  async fsstat(): Promise<FsStat> {
    return { tbytes: 1 << 30, fbytes: 1 << 29, abytes: 1 << 29, tfiles: 1e6, ffiles: 1e6, afiles: 1e6 };
  }
}
