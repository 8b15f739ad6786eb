/**
 * The state each RPC fuzz input runs against, built fresh per input (so a
 * finding replays from its bytes alone): a small NFS tree on the in-memory
 * file system, with sizes capped so that a fuzzed WRITE at offset 2^50 tests
 * the server, not how much memory the test double can allocate.
 */
import { NFS3ERR_FBIG, NfsError, type CreateHow, type NfsFileSystem, type SetAttr } from '../../nfs/index.js';
import { IPPROTO_TCP, IPPROTO_UDP, PortmapRegistry } from '../../rpc/index.js';
import { MemoryFileSystem } from '../memory-fs.js';

export const EXPORT_PATH = '/export';
/** Largest file the fixture holds; beyond, FBIG (as a real file system answers past its limit). */
export const MAX_FIXTURE_FILE = 1024 * 1024;
const SUB_FILES = 24;

/** MemoryFileSystem's handle of node `id` (a version byte and the id): the generators name fixture nodes this way. */
export function fixtureHandle(id: number): Buffer {
  const h = Buffer.alloc(9);
  h[0] = 1;
  h.writeBigUInt64BE(BigInt(id), 1);
  return h;
}

/** Node ids of the fixture (1 is the export root), and a few ids the fixture does not have (STALE). */
export const FIXTURE_NODE_IDS = Array.from({ length: 34 }, (_, i) => i + 1);
export const FIXTURE_NAMES = ['disk.raw', 'sub', 'empty', 'deep', 'g', 'f-00', 'f-07', 'f-23', 'new-file', 'new-dir', '.', '..'] as const;

/**
 * A MemoryFileSystem whose files hold at most MAX_FIXTURE_FILE bytes (past
 * it, FBIG), and that notes every set-id or sticky bit the server passes on
 * (the wire drops them for every file system: issue 12, defect 8).
 */
class CappedFileSystem implements NfsFileSystem {
  constructor(
    private readonly inner: NfsFileSystem,
    private readonly violations: string[],
  ) {}

  private checkMode(op: string, set: SetAttr): void {
    if (set.mode !== undefined && (set.mode & 0o7000) !== 0) this.violations.push(`${op} was given mode ${set.mode.toString(8)} (set-id or sticky bits)`);
  }

  private checkSize(size: number | undefined): void {
    if (size !== undefined && size > MAX_FIXTURE_FILE) throw new NfsError(NFS3ERR_FBIG, `fixture files hold at most ${MAX_FIXTURE_FILE} bytes`);
  }

  exports(): readonly string[] {
    return this.inner.exports();
  }
  mount(path: string): Buffer | undefined {
    return this.inner.mount(path);
  }
  getattr(h: Buffer): ReturnType<NfsFileSystem['getattr']> {
    return this.inner.getattr(h);
  }
  async setattr(h: Buffer, set: SetAttr): Promise<void> {
    this.checkMode('setattr', set);
    this.checkSize(set.size);
    return this.inner.setattr(h, set);
  }
  lookup(dir: Buffer, name: string): Promise<Buffer> {
    return this.inner.lookup(dir, name);
  }
  readlink(h: Buffer): Promise<string> {
    return this.inner.readlink(h);
  }
  read(h: Buffer, offset: number, count: number): Promise<Buffer> {
    return this.inner.read(h, offset, count);
  }
  async write(h: Buffer, offset: number, data: Buffer, stable: boolean): Promise<void> {
    this.checkSize(offset + data.length);
    return this.inner.write(h, offset, data, stable);
  }
  commit(h: Buffer): Promise<void> {
    return this.inner.commit(h);
  }
  async create(dir: Buffer, name: string, how: CreateHow): Promise<Buffer> {
    if (how.mode !== 'exclusive') {
      this.checkMode('create', how.attrs);
      this.checkSize(how.attrs.size);
    }
    return this.inner.create(dir, name, how);
  }
  async mkdir(dir: Buffer, name: string, attrs: SetAttr): Promise<Buffer> {
    this.checkMode('mkdir', attrs);
    return this.inner.mkdir(dir, name, attrs);
  }
  remove(dir: Buffer, name: string): Promise<void> {
    return this.inner.remove(dir, name);
  }
  rmdir(dir: Buffer, name: string): Promise<void> {
    return this.inner.rmdir(dir, name);
  }
  rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string): Promise<void> {
    return this.inner.rename(fromDir, fromName, toDir, toName);
  }
  readdir(dir: Buffer): ReturnType<NfsFileSystem['readdir']> {
    return this.inner.readdir(dir);
  }
  fsstat(h: Buffer): ReturnType<NfsFileSystem['fsstat']> {
    return this.inner.fsstat(h);
  }
}

const DISK_BYTES = Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 31) & 0xff));

/**
 * /export: disk.raw (8 KiB), sub/ (f-00…f-23 and deep/g), empty/. Node ids
 * are fixed by the creation order: root 1, disk.raw 2, sub 3, f-xx 4-27,
 * empty 28, deep 29, g 30.
 */
export async function nfsFixture(violations: string[]): Promise<NfsFileSystem> {
  const mem = new MemoryFileSystem(EXPORT_PATH);
  const root = mem.mount(EXPORT_PATH)!;
  const disk = await mem.create(root, 'disk.raw', { mode: 'unchecked', attrs: {} });
  await mem.write(disk, 0, DISK_BYTES);
  const sub = await mem.mkdir(root, 'sub', {});
  for (let i = 0; i < SUB_FILES; i++) await mem.create(sub, `f-${String(i).padStart(2, '0')}`, { mode: 'guarded', attrs: {} });
  await mem.mkdir(root, 'empty', {});
  const deep = await mem.mkdir(sub, 'deep', {});
  await mem.create(deep, 'g', { mode: 'guarded', attrs: {} });
  return new CappedFileSystem(mem, violations);
}

/** A portmapper table as a server holding NFS and MOUNT has it. */
export function portmapFixture(): PortmapRegistry {
  const reg = new PortmapRegistry();
  for (const prot of [IPPROTO_TCP, IPPROTO_UDP]) {
    reg.set({ prog: 100000, vers: 2, prot, port: 111 }, { owned: true });
    reg.set({ prog: 100005, vers: 3, prot, port: 20048 }, { owned: true });
  }
  reg.set({ prog: 100003, vers: 3, prot: IPPROTO_TCP, port: 2049 }, { owned: true });
  reg.set({ prog: 400000, vers: 1, prot: IPPROTO_TCP, port: 4000 });
  return reg;
}
