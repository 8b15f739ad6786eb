import { processAlive } from '../core/process-alive.js';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { NbdServer, type NbdDevice, type NbdExports } from '../nbd/index.js';
import {
  RestorePointDisk,
  filesForPoint,
  hostHoldTag,
  loadJob,
  removeHold,
  resolvePoint,
  scanJob,
  withHoldsLock,
  writeHold,
  type PointInfo,
  type Repository,
} from '../repository/index.js';

/**
 * What a running server lends the disks a browse exports (its instant
 * sessions' worker pool, block cache and disk cache): blocks are decoded and
 * checked off the thread that answers the appliance's reads, ahead of a
 * sequential reader, and a block the disk cache holds (an instant session's,
 * or an earlier browse's) is read from there instead of decoded again.
 * Without them (a CLI alone) the export decodes on its own thread.
 */
export type SharedDecoding = Pick<NonNullable<Parameters<typeof RestorePointDisk.open>[2]>, 'pool' | 'cache' | 'decoded'>;

/** A point's disks as NBD exports `disk<n>`, read-only, on a unix socket of a private folder. */
export interface PointExport {
  readonly point: PointInfo;
  readonly socket: string;
  readonly exportNames: readonly string[];
  close(): Promise<void>;
}

const HOLD_PREFIX = 'files-';
const HOLD_WAIT_MS = 30_000;

function readOnly(disk: RestorePointDisk): NbdDevice {
  const refuse = (): never => {
    throw Object.assign(new Error('this export of a restore point is read-only'), { code: 'EROFS' });
  };
  return {
    size: disk.size,
    read: (offset, length) => disk.read(offset, length),
    readPinned: (offset, length) => disk.readPinned(offset, length),
    write: async () => refuse(),
    flush: async () => undefined,
    extents: (offset, length) => disk.extents(offset, length),
  };
}

/** Holds of `files` runs whose process is gone (killed with -9): they would keep the point from retention forever. */
async function removeStaleHolds(jobDir: string, job: string, storage: Repository['storage']): Promise<void> {
  const names = await storage.list(join(jobDir, 'holds')).catch(() => [] as string[]);
  // Only this host's: on shared storage the pids of other hosts' holds say nothing here.
  const own = new RegExp(`^${HOLD_PREFIX}${hostHoldTag(storage)}(\\d+)-[0-9a-f]+\\.json$`);
  for (const n of names) {
    const m = own.exec(n);
    if (m && !processAlive(Number(m[1])))
      await withHoldsLock(jobDir, `job "${job}"`, () => removeHold(jobDir, n.slice(0, -'.json'.length), storage), { waitMs: HOLD_WAIT_MS, storage });
  }
}

/**
 * Serves the disks of one point without a running server: an in-process NBD
 * server on `<dir>/nbd.sock` (`dir` is made mode 0700, so only this user
 * reaches it). Writes are refused; backup files are only ever read. The point
 * is held against retention until close().
 */
export async function exportPoint(
  repo: Repository,
  job: string,
  pointRef: string,
  dir: string,
  logger: Logger,
  shared: SharedDecoding = {},
): Promise<PointExport> {
  const def = await loadJob(repo, job);
  const jobDir = repo.jobDir(def.name);
  await removeStaleHolds(jobDir, def.name, repo.storage);
  const first = resolvePoint(await scanJob(jobDir, repo.storage), pointRef);
  const holder = `${HOLD_PREFIX}${hostHoldTag(repo.storage)}${process.pid}-${Math.random().toString(16).slice(2, 10)}`;
  await withHoldsLock(jobDir, `job "${def.name}"`, () => writeHold(jobDir, holder, first.id, repo.storage), { waitMs: HOLD_WAIT_MS, storage: repo.storage });
  const disks: RestorePointDisk[] = [];
  let server: NbdServer | undefined;
  const close = async (): Promise<void> => {
    await server?.close();
    await Promise.all(disks.map((d) => d.close()));
    await withHoldsLock(jobDir, `job "${def.name}"`, () => removeHold(jobDir, holder, repo.storage), { waitMs: HOLD_WAIT_MS, storage: repo.storage }).catch(
      () => undefined,
    );
  };
  try {
    // Looked up again now that it is held: retention may have removed it in between.
    const state = await scanJob(jobDir, repo.storage);
    const files = filesForPoint(state, first.id);
    if (!files) throw new LifeboatError('LFB_ERR_POINT_NOT_FOUND', `restore point ${first.id} of job ${def.name} is no longer in the repository`);
    for (let i = 0; i < first.diskSizes.length; i++) disks.push(await RestorePointDisk.open(files, i, { ...shared, storage: repo.storage }));
    const names = disks.map((_, i) => `disk${i}`);
    const exports: NbdExports = {
      list: () => names.map((name) => ({ name, description: `${def.name} point ${first.id}` })),
      open: (name) => {
        const i = names.indexOf(name);
        return i < 0 ? undefined : readOnly(disks[i]!);
      },
    };
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const socket = join(dir, 'nbd.sock');
    server = new NbdServer({ exports, logger });
    await server.listenUnix(socket);
    return { point: first, socket, exportNames: names, close };
  } catch (err) {
    await close();
    throw err;
  }
}
