import { join } from 'node:path';
import type { CowOverlay, ZeroDisk } from '../blockdev/index.js';
import { RestorePointDisk } from '../repository/index.js';
import type { DatastoreDisk, DatastoreSession } from './datastore-fs.js';
import type { SessionRecord } from './session-store.js';
import type { Open } from './session-types.js';

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
