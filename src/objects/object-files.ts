import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import type { OpenMode, Storage, StorageFile } from '../storage/storage.js';
import { ExtentMap } from './extent-map.js';
import { DIR_MARK, PACKS, ROOTS, decodeRoot, dirMarkName, encodeRoot, generationOf, packTime, rootName } from './file-root.js';
import { ObjectFile, PACK_BYTES, lockedUntil, noSuchFile, toStorageError, type FilePlace } from './object-file.js';
import type { ObjectStore } from './object-store.js';

/**
 * This host's folder for what belongs to the object store at `location` (an
 * s3:// URL as the store spells it) but is not kept in it: locks, caches, an
 * instant-recovery server's sessions. One folder for every process of the
 * host, whatever its TMPDIR or PrivateTmp: under the server's state folder.
 */
export function objectStoreHostDir(location: string): string {
  // Absolute whatever the process's working folder: every process of the host must find the same folder.
  const stateDir = resolve(process.env['LIFEBOAT_STATE_DIR'] || '/var/lib/lifeboat');
  return join(stateDir, 'object-stores', createHash('sha256').update(location).digest('hex').slice(0, 16));
}

/** A file of a folder on object storage: its name, latest committed generation, the size of that root object and its own size (-1: the root does not decode). */
export interface FolderFile {
  readonly name: string;
  readonly generation: number;
  readonly rootBytes: number;
  readonly size: number;
}

/** Root sizes kept by folderFiles (a root's size never changes); past this many the memory starts again. */
const ROOT_SIZES_KEPT = 100_000;

/** How old an unreferenced pack must be before collect() removes it: a writer may not have committed the root naming it yet. */
export const DEFAULT_GRACE_MS = 6 * 60 * 60 * 1000;

export interface ObjectFileOptions {
  /** The clock of pack names (tests move it). */
  readonly now?: () => number;
  /** Unflushed bytes of an open file before they go to a pack (PACK_BYTES). */
  readonly packBytes?: number;
  /** This host's folder for the store's locks and caches (hostPath); default: one per store under $LIFEBOAT_STATE_DIR (/var/lib/lifeboat)/object-stores. */
  readonly hostDir?: string;
}

export interface CollectReport {
  readonly packsRemoved: number;
  readonly bytesFreed: number;
  readonly rootsRemoved: number;
  readonly packsKept: number;
}

/**
 * The storage seam on an object store: the files under `root` (a path that
 * stands for the store; `s3://bucket/prefix` in messages) are kept as packs
 * and roots (file-root.ts, object-file.ts), so everything written through
 * the seam can live on S3 without ever overwriting an object. Folders are
 * implicit in names, except those mkdir made (a mark object). A rename writes
 * the source's root under the new name and then removes the old one: a crash
 * between the two leaves both names, sharing packs. Nothing removes a pack
 * but collect(), which keeps every pack any root names.
 *
 * Costs: list() of a folder reads every name below it (the store has no
 * delimiter listing); open is a list and a GET of the root.
 */
export class ObjectFileStorage implements Storage {
  /** Writable files open now, by name: rename and remove move or detach them. */
  private readonly open_ = new Map<string, Set<ObjectFile>>();
  /** File sizes of committed roots, by root object name and size (folderFiles). */
  private readonly rootSizes = new Map<string, number>();

  constructor(
    readonly store: ObjectStore,
    readonly root: string,
    private readonly options: ObjectFileOptions = {},
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Which objects get an object-lock date (an immutable repository's backup files): none until set. */
  private retentionRule: ((rel: string, kind: 'pack' | 'root') => Date | undefined) | undefined;

  /**
   * Puts an object-lock date (COMPLIANCE) on the packs and roots written from now on of the files `rule` names:
   * nobody can delete them before it, and a file's older roots stay until then (readers take the latest).
   */
  setRetention(rule: (rel: string, kind: 'pack' | 'root') => Date | undefined): void {
    this.retentionRule = rule;
  }

  private retainUntil(rel: string, kind: 'pack' | 'root'): Date | undefined {
    return this.retentionRule?.(rel, kind);
  }

  /** Runs `fn`, its failures as the storage seam's (toStorageError). */
  private async mapped<T>(doing: string, path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStorageError(err, doing, path);
    }
  }

  /** The name under the store of `path` ('' for the root). */
  private rel(path: string): string {
    if (path === this.root) return '';
    if (!path.startsWith(`${this.root}/`))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${path} is not under ${this.root} (${this.store.location})`, { details: { path } });
    const rel = path.slice(this.root.length + 1);
    if (rel.includes('#'))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${path}: "#" cannot be in the name of a file on object storage`, { details: { path } });
    return rel;
  }

  private fileRel(path: string): string {
    const rel = this.rel(path);
    if (rel === '') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${path} is the storage's root folder, not a file`, { details: { path } });
    return rel;
  }

  /** Every committed generation of `rel` (normally one), lowest first. */
  private async generations(rel: string): Promise<number[]> {
    const out: number[] = [];
    for await (const o of this.store.list(`${ROOTS}${rel}#`)) {
      const g = generationOf(o.name, rel);
      if (g !== undefined) out.push(g);
    }
    return out.sort((a, b) => a - b);
  }

  open(path: string, mode: OpenMode): Promise<StorageFile> {
    return this.mapped('open', path, () => this.openFile(path, mode));
  }

  private async openFile(path: string, mode: OpenMode): Promise<StorageFile> {
    const rel = this.fileRel(path);
    const gens = await this.generations(rel);
    const latest = gens[gens.length - 1];
    let map: ExtentMap;
    let generation: number;
    if (latest === undefined || mode === 'replace') {
      if (latest === undefined && (mode === 'read' || mode === 'write')) throw noSuchFile('open', path);
      // Created (or emptied) at once, as open(2) would: the name is there before anything is written.
      generation = (latest ?? 0) + 1;
      try {
        await this.store.put(rootName(rel, generation), encodeRoot(0, []), { ifNoneMatch: '*', ...lockedUntil(this.retainUntil(rel, 'root')) });
      } catch (err) {
        if (isLifeboatError(err, 'LFB_ERR_OBJECT_EXISTS') && mode === 'create') return this.openFile(path, 'write');
        throw err;
      }
      if (latest !== undefined) await this.store.delete(rootName(rel, latest)).catch(() => undefined);
      map = new ExtentMap();
    } else {
      const name = rootName(rel, latest);
      const root = decodeRoot(name, await this.store.get(name));
      map = new ExtentMap(root.extents, root.size);
      generation = latest;
    }
    const place: FilePlace = { rel, generation, unlinked: false };
    const writable = mode !== 'read';
    const file = new ObjectFile(path, this.store, place, map, writable, {
      now: () => this.now(),
      packBytes: this.options.packBytes ?? PACK_BYTES,
      retainUntil: (r, kind) => this.retainUntil(r, kind),
      onClosed: (f) => this.forget(f),
    });
    if (writable) this.remember(file);
    return file;
  }

  private remember(f: ObjectFile): void {
    let set = this.open_.get(f.place.rel);
    if (set === undefined) this.open_.set(f.place.rel, (set = new Set()));
    set.add(f);
  }

  private forget(f: ObjectFile): void {
    const set = this.open_.get(f.place.rel);
    set?.delete(f);
    if (set?.size === 0) this.open_.delete(f.place.rel);
  }

  rename(from: string, to: string): Promise<void> {
    return this.mapped('rename', from, () => this.renameFile(from, to));
  }

  private async renameFile(from: string, to: string): Promise<void> {
    const fromRel = this.fileRel(from);
    const toRel = this.fileRel(to);
    if (fromRel === toRel) return;
    const fromGens = await this.generations(fromRel);
    const latest = fromGens[fromGens.length - 1];
    if (latest === undefined) throw noSuchFile('rename', from);
    // A root does not name its file: the same bytes are the new name's root.
    const bytes = await this.store.get(rootName(fromRel, latest));
    decodeRoot(rootName(fromRel, latest), bytes);
    const toGens = await this.generations(toRel);
    const generation = (toGens[toGens.length - 1] ?? 0) + 1;
    await this.store.put(rootName(toRel, generation), bytes, { ifNoneMatch: '*', ...lockedUntil(this.retainUntil(toRel, 'root')) });
    for (const g of toGens) await this.store.delete(rootName(toRel, g)).catch(() => undefined);
    for (const f of this.open_.get(toRel) ?? []) f.place.unlinked = true;
    for (const g of fromGens) await this.store.delete(rootName(fromRel, g));
    const moving = [...(this.open_.get(fromRel) ?? [])];
    this.open_.delete(fromRel);
    for (const f of moving) {
      f.place.rel = toRel;
      f.place.generation = generation;
      this.remember(f);
    }
  }

  remove(path: string): Promise<boolean> {
    return this.mapped('remove', path, () => this.removeFile(path));
  }

  private async removeFile(path: string): Promise<boolean> {
    const rel = this.fileRel(path);
    const gens = await this.generations(rel);
    if (gens.length === 0) return false;
    for (const g of gens) await this.store.delete(rootName(rel, g));
    for (const f of this.open_.get(rel) ?? []) f.place.unlinked = true;
    return true;
  }

  list(dir: string): Promise<string[]> {
    return this.mapped('list', dir, () => this.listFolder(dir));
  }

  private async listFolder(dir: string): Promise<string[]> {
    const rel = this.rel(dir);
    const prefix = rel === '' ? ROOTS : `${ROOTS}${rel}/`;
    const names = new Set<string>();
    for await (const o of this.store.list(prefix)) {
      const rest = o.name.slice(prefix.length);
      const slash = rest.indexOf('/');
      const hash = rest.indexOf('#');
      names.add(slash >= 0 && (hash < 0 || slash < hash) ? rest.slice(0, slash) : rest.slice(0, hash));
    }
    names.delete('');
    return [...names].sort();
  }

  /**
   * The files directly in a folder, each with its latest committed generation,
   * its root object's size and its own size, from one listing: a commit makes
   * a new root, so name, generation and root size tell a change (what a folder
   * signature needs). File sizes are read from the roots once and kept by root
   * name and size. A root replaced between the listing and its read makes the
   * folder listed again; a root that does not decode has size -1 (scanJob
   * reports the file as damaged). `wanted`: the names to read (default all).
   */
  folderFiles(dir: string, wanted: (name: string) => boolean = () => true): Promise<FolderFile[]> {
    return this.mapped('list', dir, async () => {
      for (let attempt = 1; ; attempt++) {
        const files = await this.listFolderFiles(dir, wanted);
        if (files !== undefined) return files;
        if (attempt === 3) throw new LifeboatError('LFB_ERR_IO', `${dir}: its files kept changing while they were listed`, { details: { path: dir } });
      }
    });
  }

  /** One try of folderFiles; undefined when a listed root was gone when read. */
  private async listFolderFiles(dir: string, wanted: (name: string) => boolean): Promise<FolderFile[] | undefined> {
    const rel = this.rel(dir);
    const prefix = rel === '' ? ROOTS : `${ROOTS}${rel}/`;
    const latest = new Map<string, { generation: number; rootBytes: number }>();
    for await (const o of this.store.list(prefix)) {
      const rest = o.name.slice(prefix.length);
      const hash = rest.indexOf('#');
      if (hash <= 0 || rest.lastIndexOf('/', hash) >= 0) continue;
      const name = rest.slice(0, hash);
      if (!wanted(name)) continue;
      const g = generationOf(o.name, rel === '' ? name : `${rel}/${name}`);
      if (g !== undefined && g > (latest.get(name)?.generation ?? -1)) latest.set(name, { generation: g, rootBytes: o.size });
    }
    const named = [...latest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const sizes = await Promise.all(
      named.map(async ([name, { generation, rootBytes }]) => {
        const object = rootName(rel === '' ? name : `${rel}/${name}`, generation);
        const key = `${object} ${rootBytes}`;
        const known = this.rootSizes.get(key);
        if (known !== undefined) return known;
        const got = await this.store.get(object).catch((err: unknown) => {
          if (isLifeboatError(err, 'LFB_ERR_OBJECT_NOT_FOUND')) return undefined;
          throw err;
        });
        if (got === undefined) return undefined;
        let size: number;
        try {
          size = decodeRoot(object, got).size;
        } catch {
          size = -1;
        }
        if (this.rootSizes.size >= ROOT_SIZES_KEPT) this.rootSizes.clear();
        this.rootSizes.set(key, size);
        return size;
      }),
    );
    if (sizes.some((s) => s === undefined)) return undefined;
    return named.map(([name, { generation, rootBytes }], k) => ({ name, generation, rootBytes, size: sizes[k]! }));
  }

  hostPath(path: string): string {
    const rel = this.rel(path);
    const dir = this.options.hostDir ?? objectStoreHostDir(this.store.location);
    return rel === '' ? dir : join(dir, rel);
  }

  removeFolder(dir: string): Promise<void> {
    return this.mapped('delete folder', dir, () => this.removeFolderObjects(dir));
  }

  private async removeFolderObjects(dir: string): Promise<void> {
    const rel = this.fileRel(dir);
    const names: string[] = [];
    for await (const o of this.store.list(`${ROOTS}${rel}/`)) names.push(o.name);
    for (const name of names) await this.store.delete(name);
    await this.store.delete(dirMarkName(rel));
  }

  /** Every commit is durable when its put returns: nothing to do. */
  async syncDir(dir: string): Promise<void> {
    this.rel(dir);
  }

  mkdir(dir: string): Promise<void> {
    return this.mapped('create folder', dir, () => this.makeFolder(dir));
  }

  private async makeFolder(dir: string): Promise<void> {
    const rel = this.rel(dir);
    if (rel === '') return;
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) await this.store.put(dirMarkName(parts.slice(0, i).join('/')), Buffer.alloc(0));
  }

  /**
   * Removes what no file needs: roots older than their file's latest, and
   * packs no root names that are older than `graceMs` (younger ones may be a
   * writer's that has not committed yet). Run it when no writer is older than
   * the grace.
   */
  async collect(graceMs = DEFAULT_GRACE_MS): Promise<CollectReport> {
    const latest = new Map<string, number>();
    const stale: string[] = [];
    const listed = new Set<string>();
    for await (const o of this.store.list(ROOTS)) {
      listed.add(o.name);
      const hash = o.name.lastIndexOf('#');
      const rel = o.name.slice(ROOTS.length, hash);
      const mark = o.name.slice(hash + 1);
      if (mark === DIR_MARK) continue;
      const g = generationOf(o.name, rel);
      if (g === undefined) continue;
      const seen = latest.get(rel);
      if (seen !== undefined) stale.push(rootName(rel, Math.min(seen, g)));
      latest.set(rel, Math.max(seen ?? g, g));
    }
    const named = new Set<string>();
    const mark = async (name: string): Promise<void> => {
      // A root replaced since the listing is gone: its successor is read in the second pass.
      const bytes = await this.store.get(name).catch((err: unknown) => {
        if (isLifeboatError(err, 'LFB_ERR_OBJECT_NOT_FOUND')) return undefined;
        throw err;
      });
      if (bytes !== undefined) for (const e of decodeRoot(name, bytes).extents) named.add(e.pack!);
    };
    for (const [rel, g] of latest) await mark(rootName(rel, g));
    // Again, for roots made while the first pass ran (a commit, or a rename to a name the listing had passed): their packs stay too.
    for await (const o of this.store.list(ROOTS)) {
      const hash = o.name.lastIndexOf('#');
      if (!listed.has(o.name) && generationOf(o.name, o.name.slice(ROOTS.length, hash)) !== undefined) await mark(o.name);
    }
    let rootsRemoved = 0;
    for (const name of stale) if (await this.deleteUnlessLocked(name)) rootsRemoved++;
    let packsRemoved = 0;
    let bytesFreed = 0;
    let packsKept = 0;
    const before = this.now() - graceMs;
    for await (const o of this.store.list(PACKS)) {
      const made = packTime(o.name);
      if (named.has(o.name) || made === undefined || made > before) {
        packsKept++;
        continue;
      }
      if (!(await this.deleteUnlessLocked(o.name))) {
        packsKept++;
        continue;
      }
      packsRemoved++;
      bytesFreed += o.size;
    }
    return { packsRemoved, bytesFreed, rootsRemoved, packsKept };
  }

  /** Deletes an object; false when its object-lock date has not come (it goes at a later collect). */
  private async deleteUnlessLocked(name: string): Promise<boolean> {
    try {
      await this.store.delete(name);
      return true;
    } catch (err) {
      if (isLifeboatError(err, 'LFB_ERR_IMMUTABLE')) return false;
      throw err;
    }
  }
}
