import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { CowOverlay, ZeroDisk } from '../blockdev/index.js';
import { QemuVm, hotPlugNbdDisk } from '../qemu/index.js';
import { SessionMigrations } from './session-migration.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import type { NbdExports } from '../nbd/index.js';
import { SessionStore, type SessionRecord } from './session-store.js';
import { DatastoreFileSystem } from './datastore-fs.js';
import { vmdkDescriptor, vmx } from './vmware-files.js';
import { migrationTarget, newSessionDir } from './session-paths.js';
import { BlockCache } from '../repository/block-cache.js';
import type { DecodedBlockStore } from '../repository/decoded-store.js';
import { DEFAULT_DISK_CACHE_BUDGET, SessionDiskCache, type CacheStats } from './session-disk-cache.js';
import { BOOT_RECORD_MS, BootLearning } from './boot-prefetch.js';
import { SessionClients, type NbdConnections } from './session-clients.js';
import { bootSession } from './session-boot.js';
import { makeBlankDisk } from './session-blank-disk.js';
import { EXPORT_PATH, datastoreDisk, datastoreSession, safeFileName, sessionExports, sessionInfo } from './session-publish.js';
import type { Open, SessionInfo, StartOptions } from './session-types.js';
import { RestorePointDisk, filesForPoint, loadJob, resolvePoint, scanJob, type JobState, type PointInfo, type Repository } from '../repository/index.js';

export type { BootOptions, Open, SessionInfo, StartOptions } from './session-types.js';
export { DEFAULT_DISK_CACHE_BUDGET, type CacheStats } from './session-disk-cache.js';

export { EXPORT_PATH } from './session-publish.js';

/** Decoded backup blocks all sessions of a server keep, together, by default. */
export const DEFAULT_CACHE_BUDGET = 512 * 1024 * 1024;

export interface InstantRecoveryOptions {
  /** Bytes of decoded backup blocks kept in memory for all sessions together (default DEFAULT_CACHE_BUDGET); 0 keeps none. */
  readonly cacheBudgetBytes?: number | undefined;
  /** Bytes of decoded backup blocks kept on local storage, across restarts (default DEFAULT_DISK_CACHE_BUDGET); 0 keeps none. */
  readonly diskCacheBudgetBytes?: number | undefined;
  /** How long after a session starts the blocks its clients read are noted for the next session's prefetch (default BOOT_RECORD_MS). */
  readonly bootRecordMs?: number | undefined;
}

/**
 * Instant-recovery sessions: a restore point's disks, each a RestorePointDisk
 * under a persistent copy-on-write overlay, published on the datastore file
 * system. Publishing costs the point's block map, never its data. The backup
 * files are only ever read. Sessions are recorded in the repository and
 * reopened when the server starts again, with the same handles and overlays.
 */
export class InstantRecovery {
  readonly fs: DatastoreFileSystem;
  private readonly store: SessionStore;
  private readonly open = new Map<string, Open>();
  private readonly failed = new Map<string, { rec: SessionRecord; problem: string }>();
  /**
   * The operation running on each session (start, add-disk, migrate, stop):
   * the next one waits for it, so two calls never build two overlays on one
   * map file or record a disk twice.
   */
  private readonly busy = new Map<string, Promise<unknown>>();
  /** Decodes backup blocks for every session, off the thread that serves NFS. */
  private readonly pool = new BlockWorkerPool();
  /** Where this server's NBD exports are reached (a booted VM's disks go through it). */
  private nbd: { host: string; port: number } | undefined;
  readonly migrations: SessionMigrations;
  /**
   * Decoded blocks of every session's disks, under one budget: a booting
   * guest rereads the same blocks often, and ten sessions of four disks
   * must not each keep their own.
   */
  readonly blockCache: BlockCache;
  /** Who uses each session's disks over NFS and NBD. */
  readonly clients: SessionClients;
  /** Decoded blocks kept on local storage for every session, across restarts. */
  private readonly diskCache: SessionDiskCache;
  /** What sessions read first, noted for the next session of their job to prefetch. */
  private readonly bootLearning: BootLearning;

  constructor(
    private readonly repo: Repository,
    private readonly clock: Clock,
    private readonly logger: Logger,
    opts: InstantRecoveryOptions = {},
  ) {
    this.blockCache = new BlockCache(opts.cacheBudgetBytes ?? DEFAULT_CACHE_BUDGET);
    const diskCacheBytes = opts.diskCacheBudgetBytes ?? DEFAULT_DISK_CACHE_BUDGET;
    // A prefetch decodes no more than both caches can hold: memory (where the guest finds it first) and, when on, the disk.
    const prefetchBytes = Math.min(this.blockCache.budgetBytes, diskCacheBytes > 0 ? diskCacheBytes : Infinity);
    this.bootLearning = new BootLearning(repo.hostRoot, opts.bootRecordMs ?? BOOT_RECORD_MS, prefetchBytes, logger);
    this.diskCache = new SessionDiskCache(repo, diskCacheBytes, clock, logger);
    this.store = new SessionStore(repo.root, repo.hostRoot, repo.storage);
    this.fs = new DatastoreFileSystem(EXPORT_PATH, join(repo.hostRoot, 'cache'), clock);
    this.migrations = new SessionMigrations(logger, clock);
    this.clients = new SessionClients(clock);
  }

  setNbdEndpoint(host: string, port: number, connections?: NbdConnections): void {
    this.nbd = { host: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host, port };
    if (connections) this.clients.setNbd(connections);
  }

  /** The open session named `name`, or LFB_ERR_SESSION_NOT_FOUND. */
  session(name: string): Open {
    const o = this.open.get(name);
    if (o) return o;
    const f = this.failed.get(name);
    if (f) throw new LifeboatError('LFB_ERR_SESSION_NOT_FOUND', `session "${name}" could not be reopened: ${f.problem}`);
    throw new LifeboatError('LFB_ERR_SESSION_NOT_FOUND', `no instant-recovery session "${name}" (see \`lifeboat instant list\`)`);
  }

  /** Reopens every recorded session (after a restart). A session that cannot open is listed as failed. */
  async loadSessions(): Promise<void> {
    for (const orphan of await this.store.removeOrphanHolds())
      this.logger.warn('instant recovery: removed the hold of a session that was never recorded', { session: orphan });
    for (const rec of await this.store.list()) {
      try {
        await this.activate(rec);
        const o = this.open.get(rec.name)!;
        const vm = await QemuVm.attach(rec.dir, this.logger, this.clock);
        if (vm) o.vm = vm;
        await this.migrations.resume(o);
      } catch (err) {
        const problem = err instanceof Error ? err.message : String(err);
        this.failed.set(rec.name, { rec, problem });
        this.logger.error('instant recovery: session could not be reopened', { session: rec.name, problem });
      }
    }
  }

  /** Runs `fn` after every operation already running on session `name`, and before any that comes later. */
  private async serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.busy.get(name) ?? Promise.resolve();
    const run = before.then(fn);
    const tail = run.catch(() => undefined);
    this.busy.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.busy.get(name) === tail) this.busy.delete(name);
    }
  }

  async start(job: string, point: string, opts: StartOptions = {}): Promise<SessionInfo> {
    const def = await loadJob(this.repo, job);
    const state = await scanJob(this.repo.jobDir(def.name), this.repo.storage);
    const p = resolvePoint(state, point);
    const name = opts.name ?? `${def.name}-${p.id.slice(0, 6)}-${this.clock.now().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
    SessionStore.validateName(name);
    const info = await this.serial(name, () => this.startSession(def.name, state, p, name, opts));
    this.logger.info('instant recovery: session started', { session: name, job: def.name, point: p.id, disks: info.disks.map((d) => d.name) });
    return info;
  }

  private async startSession(job: string, state: JobState, p: PointInfo, name: string, opts: StartOptions): Promise<SessionInfo> {
    if (this.open.has(name) || this.failed.has(name)) throw new LifeboatError('LFB_ERR_SESSION_EXISTS', `a session named "${name}" already exists`);
    const files = filesForPoint(state, p.id)!;
    const vm = files[files.length - 1]!.root.meta.vm;
    const chosen = opts.disks ?? p.diskSizes.map((_, i) => i);
    for (const i of chosen) {
      if (!Number.isInteger(i) || i < 0 || i >= p.diskSizes.length)
        throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `--disks: the point has disks 0 to ${p.diskSizes.length - 1}, no disk ${i}`);
    }
    if (opts.boot && !this.nbd) throw new LifeboatError('LFB_ERR_VM', 'this server has no NBD endpoint to boot a VM from');
    const dir = await newSessionDir(this.repo.hostRoot, name, opts.cacheDir);
    const rec: SessionRecord = {
      version: 1,
      id: newUuid(),
      name,
      job,
      pointId: p.id,
      createdAt: this.clock.now().toISOString(),
      dir,
      vmName: vm.name,
      disks: [...new Set(chosen)].sort((a, b) => a - b).map((index) => ({ index, name: vm.disks[index]?.name ?? `disk${index}`, size: p.diskSizes[index]! })),
    };
    await this.store.create(rec);
    try {
      // The descriptors and .vmx are ordinary files of the session: the hypervisor may edit them.
      await mkdir(join(dir, 'files'), { recursive: true });
      for (const d of rec.disks) await writeFile(join(dir, 'files', `${d.name}.vmdk`), vmdkDescriptor(d.name, d.size));
      await writeFile(join(dir, 'files', `${safeFileName(vm.name)}.vmx`), vmx(vm));
      // Looks the point up again now that it is held: retention may have removed it before.
      await this.activate(rec);
      await this.bootLearning.begin(this.open.get(name)!);
      if (opts.boot) await bootSession(this.repo, this.open.get(name)!, opts.boot, this.nbd!, this.logger, this.clock);
    } catch (err) {
      await (this.open.has(name) ? this.stopSession(name) : this.store.remove(rec)).catch(() => undefined);
      throw err;
    }
    return this.info(name)!;
  }

  /** Settles when session `name`'s boot prefetch is done (undefined: none runs, e.g. a session reopened after a restart). */
  bootPrefetch(name: string): Promise<void> | undefined {
    return this.bootLearning.prefetched(name);
  }

  /**
   * `instant migrate`: starts moving the session to production storage
   * (QEMU's mirror for a booted VM, Lifeboat's copy otherwise), resumes a
   * failed one, or with `finish` runs a copy's final pass.
   */
  async migrate(
    name: string,
    opts: { to?: string | undefined; format: 'raw' | 'qcow2'; rateBytesPerSec: number | null; finish: boolean; force?: boolean },
  ): Promise<SessionInfo> {
    const o = await this.serial(name, async () => {
      const o = this.session(name);
      const current = this.migrations.state(o);
      if (current?.state === 'failed') this.migrations.retry(o);
      else if (!current) {
        if (opts.to === undefined) throw new LifeboatError('LFB_ERR_USAGE', `session ${name} is not migrating yet: give --to <dir>`);
        const to = await migrationTarget(this.repo.hostRoot, o.rec.dir, opts.to);
        // A migration reads every block: what the session reads from now on is not a boot.
        this.bootLearning.discard(name);
        await this.migrations.start(o, { to, format: opts.format, rateBytesPerSec: opts.rateBytesPerSec, vmName: safeFileName(o.rec.vmName) });
      }
      return o;
    });
    // The final pass waits for the copy: stop and add-disk need not wait for it.
    if (opts.finish) {
      const force = opts.force === true;
      // A booted VM is moved by QEMU's mirror: its guest is the client, and stays one.
      if (this.migrations.state(o)?.mode !== 'mirror') await this.clients.refuseAttached(o.rec.name, force, this.logger);
      await this.migrations.finish(o, {
        // From here on the overlays change no more: nothing is acknowledged that the final copy could miss.
        beforeFinalCopy: async () => {
          await this.clients.refuseAttached(o.rec.name, force, this.logger);
          const reason = `session ${name} is being migrated to production storage: its disks take no more writes`;
          await Promise.all(o.overlays.map((ov) => ov.seal(reason)));
          const closed = await this.clients.detachNbd(name);
          if (closed > 0) this.logger.warn('instant recovery: closed NBD connections for the final copy (--force)', { session: name, connections: closed });
        },
        afterFailedCopy: () => o.overlays.forEach((ov) => ov.unseal()),
      });
    }
    return this.info(name)!;
  }

  /**
   * Adds an empty disk (zeros, all writes in its overlay) to a session; a
   * booted VM gets it hot-plugged. The session's other disks are not touched:
   * their overlays (with writes not yet flushed) keep serving the NBD
   * connections and NFS handles that have them.
   */
  async addDisk(name: string, size: number, diskName?: string): Promise<SessionInfo> {
    const info = await this.serial(name, () => this.addDiskNow(name, size, diskName));
    this.logger.info('instant recovery: disk added', { session: name, disk: info.disks[info.disks.length - 1]?.name, size });
    return info;
  }

  private async addDiskNow(name: string, size: number, diskName: string | undefined): Promise<SessionInfo> {
    const o = this.session(name);
    const disk = await makeBlankDisk(o, this.store, size, diskName);
    const before = o.rec;
    await this.publish(o, disk.rec, { base: disk.base, ov: disk.ov });
    if (o.vm?.running) {
      try {
        await hotPlugNbdDisk(await o.vm.qmp(), disk.rec.disks.length - 1, this.nbd!, `${name}/${disk.rec.disks.at(-1)!.name}`);
      } catch (err) {
        // All or nothing: a disk the VM does not have must not be listed, published or migrated.
        await this.store.update(before);
        await this.publish(o, before, undefined);
        await disk.discard();
        throw err;
      }
    }
    return this.info(name)!;
  }

  /** Makes `rec` the session's record, with a disk appended (`added`) or the last one taken away. */
  private async publish(o: Open, rec: SessionRecord, added: { base: ZeroDisk; ov: CowOverlay } | undefined): Promise<void> {
    o.rec = rec;
    if (added) {
      o.bases.push(added.base);
      o.overlays.push(added.ov);
      o.disks.push(datastoreDisk(rec.disks[rec.disks.length - 1]!, added.base, added.ov, Date.parse(rec.createdAt)));
    } else {
      o.bases.pop();
      o.overlays.pop();
      o.disks.pop();
    }
    await this.fs.addSession(datastoreSession(o));
    this.clients.track(
      rec.id,
      rec.name,
      rec.disks.map((d) => d.name),
    );
  }

  /**
   * The sessions' worker pool, block cache and disk cache, for this server's
   * other readers of a point (file-level recovery). A block cache turned off
   * (`--cache-budget 0`) is not lent: the reader keeps a small one of its own.
   */
  async sharedDecoding(): Promise<{ pool: BlockWorkerPool; cache?: BlockCache; decoded: DecodedBlockStore | undefined }> {
    return { pool: this.pool, ...(this.blockCache.budgetBytes > 0 ? { cache: this.blockCache } : {}), decoded: await this.diskCache.store() };
  }

  private async activate(rec: SessionRecord): Promise<void> {
    const state = await scanJob(this.repo.jobDir(rec.job), this.repo.storage);
    const files = filesForPoint(state, rec.pointId);
    if (!files) throw new LifeboatError('LFB_ERR_POINT_NOT_FOUND', `restore point ${rec.pointId} of job ${rec.job} is no longer in the repository`);
    const bases: (RestorePointDisk | ZeroDisk)[] = [];
    const overlays: CowOverlay[] = [];
    const decoded = await this.diskCache.store();
    try {
      for (const d of rec.disks) {
        const base = d.blank
          ? new ZeroDisk(d.size)
          : await RestorePointDisk.open(files, d.index, { pool: this.pool, cache: this.blockCache, storage: this.repo.storage, decoded });
        bases.push(base);
        overlays.push(await CowOverlay.open(base, join(rec.dir, `overlay-${d.index}`)));
      }
    } catch (err) {
      await Promise.all([...overlays.map((o) => o.close()), ...bases.map((b) => (b instanceof RestorePointDisk ? b.close() : undefined))]);
      throw err;
    }
    const created = Date.parse(rec.createdAt);
    const o: Open = { rec, bases, overlays, disks: rec.disks.map((d, i) => datastoreDisk(d, bases[i]!, overlays[i]!, created)) };
    await this.fs.addSession(datastoreSession(o));
    this.clients.track(
      rec.id,
      rec.name,
      rec.disks.map((d) => d.name),
    );
    this.open.set(rec.name, o);
  }

  /** The sessions' disks as NBD exports named <session>/<disk>: the same overlay NFS writes to. */
  nbdExports(): NbdExports {
    return sessionExports(this.open);
  }

  /** Bytes of decoded blocks the disk cache may keep (0: none). */
  get diskCacheBudgetBytes(): number {
    return this.diskCache.budgetBytes;
  }

  /** What the caches of decoded blocks hold, and how often reads found their block in them. */
  cacheStats(): CacheStats {
    const m = this.blockCache;
    return { memory: { budgetBytes: m.budgetBytes, usedBytes: m.usedBytes, blocks: m.blockCount, hits: m.hits, misses: m.misses }, ...this.diskCache.stats() };
  }

  list(): SessionInfo[] {
    return [...new Set([...this.open.keys(), ...this.failed.keys()])].sort().map((n) => this.info(n)!);
  }

  info(name: string): SessionInfo | undefined {
    const o = this.open.get(name);
    const f = this.failed.get(name);
    const rec = o?.rec ?? f?.rec;
    return rec && sessionInfo(rec, o, f?.problem, o ? this.migrations.state(o) : undefined);
  }

  /**
   * Stops a session: powers its VM off (unless a mirror migration moved it to
   * production storage: then it keeps running there), unpublishes it,
   * discards its overlays and what else it made in its folder, releases its
   * hold on the point.
   */
  async stop(name: string): Promise<void> {
    await this.serial(name, () => this.stopSession(name));
    this.logger.info('instant recovery: session stopped', { session: name });
  }

  private async stopSession(name: string): Promise<void> {
    const o = this.open.get(name);
    const f = this.failed.get(name);
    const rec = o?.rec ?? f?.rec;
    if (!rec) throw new LifeboatError('LFB_ERR_SESSION_NOT_FOUND', `no instant-recovery session "${name}" (see \`lifeboat instant list\`)`);
    const m = o ? this.migrations.state(o) : undefined;
    const released = o?.vm !== undefined && m?.mode === 'mirror' && m.state === 'done';
    if (o) {
      await this.migrations.cancel(o);
      if (released) o.vm!.close();
      else await o.vm?.powerOff();
    }
    this.fs.removeSession(rec.id);
    this.clients.forget(rec.id);
    await this.bootLearning.end(name);
    if (o) await this.closeOpen(o);
    this.open.delete(name);
    this.failed.delete(name);
    // A VM that now runs on production storage keeps its monitor sockets and logs.
    await this.store.remove(rec, { keepVm: released });
  }

  private async closeOpen(o: Open): Promise<void> {
    await Promise.all([...o.overlays.map((x) => x.close()), ...o.bases.map((b) => (b instanceof RestorePointDisk ? b.close() : undefined))]);
  }

  /** Flushes every overlay and closes (server shutdown); sessions stay recorded, booted VMs keep running. */
  async close(): Promise<void> {
    // Operations under way finish first: a half-added disk is not left behind.
    while (this.busy.size > 0) await Promise.all(this.busy.values());
    for (const o of this.open.values()) {
      await this.bootLearning.end(o.rec.name);
      await this.migrations.cancel(o);
      o.vm?.close();
      for (const ov of o.overlays) await ov.flush().catch(() => undefined);
      await this.closeOpen(o);
    }
    this.open.clear();
    await this.diskCache.close();
    await this.pool.close();
  }
}

/** How full the file system of a session's overlays is (one statfs; null where it cannot be asked, e.g. the folder is gone). */
