import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { CowOverlay, ZeroDisk } from '../blockdev/index.js';
import { RestorePointDisk } from '../repository/index.js';
import type { DatastoreDisk, DatastoreSession } from './datastore-fs.js';
import type { SessionRecord } from './session-store.js';
import type { NbdExports } from '../nbd/index.js';
import type { MigrationState } from './migration.js';
import type { Open, SessionInfo } from './session-types.js';

export const EXPORT_PATH = '/lifeboat';

/** How the datastore publishes a session's disk: its overlay, with the size the backup and the overlay take. */
export function datastoreDisk(d: SessionRecord['disks'][number], base: RestorePointDisk | ZeroDisk, ov: CowOverlay, createdMs: number): DatastoreDisk {
  let allocated = 0;
  if (base instanceof RestorePointDisk) for (const bi of base.allocatedBlocks()) allocated += base.rawLength(bi);
  return { name: d.name, device: ov, mtimeMs: createdMs, allocatedBytes: () => Math.min(ov.size, allocated + ov.writtenGranules() * ov.granule) };
}

export function datastoreSession(o: Open): DatastoreSession {
  return { id: o.rec.id, name: o.rec.name, filesDir: join(o.rec.dir, 'files'), disks: [...o.disks], createdMs: Date.parse(o.rec.createdAt) };
}

export function safeFileName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_') || 'vm';
}

/** What `instant list` and the API show of a session: running (`o`) or failed (`problem`). */
export function sessionInfo(rec: SessionRecord, o: Open | undefined, problem: string | undefined, migration: MigrationState | undefined): SessionInfo {
  return {
    name: rec.name,
    job: rec.job,
    pointId: rec.pointId,
    createdAt: rec.createdAt,
    dir: rec.dir,
    vmx: `${EXPORT_PATH}/${rec.name}/${safeFileName(rec.vmName)}.vmx`,
    disks: rec.disks.map((d, i) => ({
      name: d.name,
      size: d.size,
      nfsPath: `${EXPORT_PATH}/${rec.name}/${d.name}-flat.vmdk`,
      nbdExport: `${rec.name}/${d.name}`,
      writtenBytes: o ? o.overlays[i]!.writtenGranules() * o.overlays[i]!.granule : 0,
      io: o ? o.overlays[i]!.ioBytes() : { readBytes: 0, writtenBytes: 0 },
    })),
    ...overlaySpace(rec.dir),
    state: o ? 'running' : 'failed',
    ...(problem !== undefined ? { problem } : {}),
    ...(o?.vm ? { vm: o.vm.status() } : {}),
    ...(migration ? { migration } : {}),
  };
}

function overlaySpace(dir: string): { overlayFreeBytes: number | null; overlayTotalBytes: number | null } {
  try {
    const fs = statfsSync(dir);
    return { overlayFreeBytes: fs.bavail * fs.bsize, overlayTotalBytes: fs.blocks * fs.bsize };
  } catch {
    return { overlayFreeBytes: null, overlayTotalBytes: null };
  }
}

/** The sessions' disks as NBD exports named <session>/<disk>: the same overlay NFS writes to. */
export function sessionExports(open: ReadonlyMap<string, Open>): NbdExports {
  return {
    list: () =>
      [...open.values()].flatMap((o) => o.rec.disks.map((d) => ({ name: `${o.rec.name}/${d.name}`, description: `${o.rec.job} point ${o.rec.pointId}` }))),
    open: (name) => {
      const [session, disk] = name.split('/');
      const o = session === undefined ? undefined : open.get(session);
      const i = o ? o.rec.disks.findIndex((d) => d.name === disk) : -1;
      return o && i >= 0 ? o.overlays[i] : undefined;
    },
  };
}
