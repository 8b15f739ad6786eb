import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { CowOverlay } from '../blockdev/index.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import type { NbdExports } from '../nbd/index.js';
import { SessionStore, type SessionRecord } from './session-store.js';
import { DatastoreFileSystem, type DatastoreDisk } from './datastore-fs.js';
import { vmdkDescriptor, vmx } from './vmware-files.js';
import { RestorePointDisk, filesForPoint, loadJob, resolvePoint, scanJob, type Repository } from '../repository/index.js';

export const EXPORT_PATH = '/lifeboat';

export interface SessionInfo {
  readonly name: string;
  readonly job: string;
  readonly pointId: string;
  readonly createdAt: string;
  readonly dir: string;
  readonly vmx: string;
  readonly disks: readonly { readonly name: string; readonly size: number; readonly nfsPath: string; readonly writtenBytes: number }[];
  readonly state: 'running' | 'failed';
  readonly problem?: string;
}

interface Open {
  readonly rec: SessionRecord;
  readonly bases: RestorePointDisk[];
  readonly overlays: CowOverlay[];
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
  /** Decodes backup blocks for every session, off the thread that serves NFS. */
  private readonly pool = new BlockWorkerPool();

  constructor(
    private readonly repo: Repository,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.store = new SessionStore(repo.root);
    this.fs = new DatastoreFileSystem(EXPORT_PATH, join(repo.root, 'cache'), clock);
  }

  /** Reopens every recorded session (after a restart). A session that cannot open is listed as failed. */
  async loadSessions(): Promise<void> {
    for (const rec of await this.store.list()) {
      try {
        await this.activate(rec);
      } catch (err) {
        const problem = err instanceof Error ? err.message : String(err);
        this.failed.set(rec.name, { rec, problem });
        this.logger.error('instant recovery: session could not be reopened', { session: rec.name, problem });
      }
    }
  }

  async start(job: string, point: string, opts: { name?: string | undefined; cacheDir?: string | undefined } = {}): Promise<SessionInfo> {
    const def = await loadJob(this.repo, job);
    const state = await scanJob(this.repo.jobDir(def.name));
    const p = resolvePoint(state, point);
    const name = opts.name ?? `${def.name}-${p.id.slice(0, 6)}-${this.clock.now().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
    SessionStore.validateName(name);
    if (this.open.has(name) || this.failed.has(name)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a session named "${name}" already exists`);
    const files = filesForPoint(state, p.id)!;
    const vm = files[files.length - 1]!.root.meta.vm;
    const dir = resolve(opts.cacheDir ?? join(this.repo.root, 'cache', 'instant'), name);
    const rec: SessionRecord = {
      version: 1,
      id: newUuid(),
      name,
      job: def.name,
      pointId: p.id,
      createdAt: this.clock.now().toISOString(),
      dir,
      vmName: vm.name,
      disks: p.diskSizes.map((size, index) => ({ index, name: vm.disks[index]?.name ?? `disk${index}`, size })),
    };
    // The descriptors and .vmx are ordinary files of the session: the hypervisor may edit them.
    await mkdir(join(dir, 'files'), { recursive: true });
    for (const d of rec.disks) await writeFile(join(dir, 'files', `${d.name}.vmdk`), vmdkDescriptor(d.name, d.size));
    await writeFile(join(dir, 'files', `${safeFileName(vm.name)}.vmx`), vmx(vm));
    await this.store.save(rec);
    try {
      await this.activate(rec);
    } catch (err) {
      await this.store.remove(rec).catch(() => undefined);
      throw err;
    }
    return this.info(name)!;
  }

  private async activate(rec: SessionRecord): Promise<void> {
    const state = await scanJob(this.repo.jobDir(rec.job));
    const files = filesForPoint(state, rec.pointId);
    if (!files) throw new LifeboatError('LFB_ERR_POINT_NOT_FOUND', `restore point ${rec.pointId} of job ${rec.job} is no longer in the repository`);
    const bases: RestorePointDisk[] = [];
    const overlays: CowOverlay[] = [];
    try {
      for (const d of rec.disks) {
        // 256 MiB of decoded blocks per disk: a booting guest rereads the same blocks often.
        const base = await RestorePointDisk.open(files, d.index, { pool: this.pool, cacheBytes: 256 * 1024 * 1024 });
        bases.push(base);
        overlays.push(await CowOverlay.open(base, join(rec.dir, `overlay-${d.index}`)));
      }
    } catch (err) {
      await Promise.all([...overlays.map((o) => o.close()), ...bases.map((b) => b.close())]);
      throw err;
    }
    const created = Date.parse(rec.createdAt);
    const disks: DatastoreDisk[] = rec.disks.map((d, i) => {
      const base = bases[i]!;
      const ov = overlays[i]!;
      let allocated = 0;
      for (const bi of base.allocatedBlocks()) allocated += base.rawLength(bi);
      return { name: d.name, device: ov, mtimeMs: created, allocatedBytes: () => Math.min(ov.size, allocated + ov.writtenGranules() * ov.granule) };
    });
    await this.fs.addSession({ id: rec.id, name: rec.name, filesDir: join(rec.dir, 'files'), disks, createdMs: created });
    this.open.set(rec.name, { rec, bases, overlays });
  }

  /** The sessions' disks as NBD exports named <session>/<disk>: the same overlay NFS writes to. */
  nbdExports(): NbdExports {
    return {
      list: () => [...this.open.values()].flatMap((o) => o.rec.disks.map((d) => ({ name: `${o.rec.name}/${d.name}`, description: `${o.rec.job} point ${o.rec.pointId}` }))),
      open: (name) => {
        const [session, disk] = name.split('/');
        const o = session === undefined ? undefined : this.open.get(session);
        const i = o ? o.rec.disks.findIndex((d) => d.name === disk) : -1;
        return o && i >= 0 ? o.overlays[i] : undefined;
      },
    };
  }

  list(): SessionInfo[] {
    return [...new Set([...this.open.keys(), ...this.failed.keys()])].sort().map((n) => this.info(n)!);
  }

  info(name: string): SessionInfo | undefined {
    const o = this.open.get(name);
    const f = this.failed.get(name);
    const rec = o?.rec ?? f?.rec;
    if (!rec) return undefined;
    return {
      name: rec.name,
      job: rec.job,
      pointId: rec.pointId,
      createdAt: rec.createdAt,
      dir: rec.dir,
      vmx: `${EXPORT_PATH}/${rec.name}/${safeFileName(rec.vmName)}.vmx`,
      disks: rec.disks.map((d, i) => ({ name: d.name, size: d.size, nfsPath: `${EXPORT_PATH}/${rec.name}/${d.name}-flat.vmdk`, writtenBytes: o ? o.overlays[i]!.writtenGranules() * o.overlays[i]!.granule : 0 })),
      state: o ? 'running' : 'failed',
      ...(f ? { problem: f.problem } : {}),
    };
  }

  /** Stops a session: unpublishes it, discards its overlay and folder, releases its hold on the point. */
  async stop(name: string): Promise<void> {
    const o = this.open.get(name);
    const f = this.failed.get(name);
    const rec = o?.rec ?? f?.rec;
    if (!rec) throw new LifeboatError('LFB_ERR_POINT_NOT_FOUND', `no instant-recovery session "${name}" (see \`lifeboat instant list\`)`);
    this.fs.removeSession(rec.id);
    if (o) await Promise.all([...o.overlays.map((x) => x.close()), ...o.bases.map((b) => b.close())]);
    this.open.delete(name);
    this.failed.delete(name);
    await this.store.remove(rec);
  }

  /** Flushes every overlay and closes (server shutdown); sessions stay recorded. */
  async close(): Promise<void> {
    for (const o of this.open.values()) {
      for (const ov of o.overlays) await ov.flush().catch(() => undefined);
      await Promise.all([...o.overlays.map((x) => x.close()), ...o.bases.map((b) => b.close())]);
    }
    this.open.clear();
    await this.pool.close();
  }
}

function safeFileName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_') || 'vm';
}
