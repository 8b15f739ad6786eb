import { existsSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fromFsError } from '../core/errors.js';
import { qemuImg } from '../core/qemu-img.js';
import type { CowOverlay } from '../blockdev/index.js';
import { renameDurable, writeFileAtomic } from '../storage/index.js';

export type MigrationFormat = 'raw' | 'qcow2';

export interface MigrationDisk {
  readonly name: string;
  readonly size: number;
  /** Where the disk ends up. */
  readonly target: string;
  /** The raw file being filled (the target itself for raw; converted at the end for qcow2). */
  readonly copyPath: string;
  /** Bytes from the start that are durable in copyPath. */
  copied: number;
}

export interface MigrationState {
  readonly version: 1;
  readonly to: string;
  readonly format: MigrationFormat;
  /** mirror: QEMU's blockdev-mirror moves a VM Lifeboat booted; copy: Lifeboat copies while it keeps serving. */
  readonly mode: 'mirror' | 'copy';
  state: 'copying' | 'synced' | 'finishing' | 'done' | 'failed';
  problem?: string;
  readonly rateBytesPerSec: number | null;
  readonly disks: MigrationDisk[];
  readonly startedAt: string;
  finishedAt?: string;
}

export const migrationFile = (sessionDir: string): string => join(sessionDir, 'migration.json');

export async function loadMigration(sessionDir: string): Promise<MigrationState | undefined> {
  try {
    return JSON.parse(await readFile(migrationFile(sessionDir), 'utf8')) as MigrationState;
  } catch {
    return undefined;
  }
}

export async function saveMigration(sessionDir: string, m: MigrationState): Promise<void> {
  await writeFileAtomic(migrationFile(sessionDir), Buffer.from(JSON.stringify(m, null, 2)));
}

export function targetPath(to: string, vmName: string, disk: string, format: MigrationFormat): string {
  return join(to, `${vmName}-${disk}.${format === 'raw' ? 'raw' : 'qcow2'}`);
}

const CHUNK = 4 * 1024 * 1024;
/** Progress is made durable (data fdatasync'd, then the state) at least this often. */
const CHECKPOINT = 16 * 1024 * 1024;

/**
 * First pass of a copy migration: the disk's current content (backup +
 * overlay), in order, into a sparse raw file, while the session keeps
 * serving. Resumable: the data is fdatasync'd before `copied` moves past it,
 * so after a crash the copy continues from the last checkpoint. Holes are
 * skipped (the file is sparse and never held anything there).
 */
export async function copyPass(
  dev: CowOverlay,
  disk: MigrationDisk,
  opts: { rateBytesPerSec: number | null; checkpoint: () => Promise<void>; stopped: () => boolean },
): Promise<void> {
  const fresh = !existsSync(disk.copyPath);
  let fh;
  try {
    fh = await open(disk.copyPath, fresh ? 'w' : 'r+');
  } catch (err) {
    throw fromFsError(err, 'open migration target', disk.copyPath);
  }
  try {
    if (fresh) await fh.truncate(disk.size);
    const t0 = performance.now();
    const from = disk.copied;
    let sinceCheckpoint = 0;
    while (disk.copied < disk.size) {
      if (opts.stopped()) return;
      const n = Math.min(CHUNK, disk.size - disk.copied);
      const allHole = dev.extents(disk.copied, n).every((e) => e.hole);
      if (!allHole) {
        const data = await dev.read(disk.copied, n);
        await fh.write(data, 0, n, disk.copied);
      }
      disk.copied += n;
      sinceCheckpoint += n;
      if (sinceCheckpoint >= CHECKPOINT || disk.copied === disk.size) {
        await fh.datasync();
        await opts.checkpoint();
        sinceCheckpoint = 0;
      }
      if (opts.rateBytesPerSec !== null) {
        const due = ((disk.copied - from) / opts.rateBytesPerSec) * 1000 - (performance.now() - t0);
        if (due > 0) await new Promise((r) => setTimeout(r, due));
      }
    }
  } catch (err) {
    throw fromFsError(err, 'write migration target', disk.copyPath);
  } finally {
    await fh.close();
  }
}

/**
 * Final pass, once the client has detached: every range the overlay holds is
 * copied again (a superset of what changed during the first pass, and still
 * right after a crash lost any finer record), then the file is made durable
 * and, for qcow2, converted.
 */
export async function finishCopy(dev: CowOverlay, disk: MigrationDisk, format: MigrationFormat): Promise<void> {
  const fh = await open(disk.copyPath, 'r+').catch((err: unknown) => {
    throw fromFsError(err, 'open migration target', disk.copyPath);
  });
  try {
    for (const r of dev.writtenRanges()) {
      for (let at = r.offset; at < r.offset + r.length; at += CHUNK) {
        const n = Math.min(CHUNK, r.offset + r.length - at);
        await fh.write(await dev.read(at, n), 0, n, at);
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (format === 'qcow2') {
    const tmp = `${disk.target}.partial`;
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', disk.copyPath, tmp], 'migration to qcow2');
    await renameDurable(tmp, disk.target);
    await rm(disk.copyPath, { force: true });
  }
}
