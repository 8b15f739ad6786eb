import { join } from 'node:path';
import type { Logger } from '../core/log.js';
import { Repository } from '../repository/index.js';
import { BrowseSession, type Drive } from './browse.js';
import { exportPoint, type SharedDecoding } from './point-export.js';
import { cleanUp, newWorkDir, sweepStale, writeRecord } from './records.js';

/** Where a point's disks are served from for one browse, and how that ends. */
export interface DriveSource {
  readonly pointId: string;
  readonly drives: readonly Drive[];
  /** Stops serving (an ephemeral NBD server's close, or the end of a server's session). */
  close(): Promise<void>;
}

export interface OpenedBrowse {
  readonly browse: BrowseSession;
  readonly pointId: string;
  /** The private folder (mode 0700) of this browse: the NBD socket, the appliance's temporary files, its pipes, its record. */
  readonly workDir: string;
  close(): Promise<void>;
}

/** The point's disks from an in-process NBD server on a unix socket of `workDir` (no running server needed). */
export async function ephemeralSource(
  repoDir: string,
  job: string,
  point: string,
  workDir: string,
  logger: Logger,
  shared?: SharedDecoding,
): Promise<DriveSource> {
  const repo = await Repository.open(repoDir);
  const ex = await exportPoint(repo, job, point, join(workDir, 'nbd'), logger, shared);
  return { pointId: ex.point.id, drives: ex.exportNames.map((exportName) => ({ server: { socket: ex.socket }, exportName })), close: () => ex.close() };
}

/**
 * Opens one browse: a private folder, the point's disks from `source`, one
 * appliance; with `mountAt` (files mount), its FUSE tree there. Everything
 * made is undone by close(), and by a failure on the way; what a kill -9
 * leaves is undone by the next browse (sweepStale).
 */
export async function openBrowse(
  source: (workDir: string) => Promise<DriveSource>,
  opts: { mountAt?: string; progress?: (line: string) => void } = {},
): Promise<OpenedBrowse> {
  await sweepStale();
  const workDir = await newWorkDir();
  const mountAt = opts.mountAt;
  const base = { ownerPid: process.pid, ...(mountAt !== undefined ? { mountAt, userMount: true } : {}) };
  await writeRecord(workDir, base);
  let src: DriveSource | undefined;
  try {
    src = await source(workDir);
    const browse = await BrowseSession.open({
      drives: src.drives,
      workDir,
      ...(mountAt !== undefined ? { mountAt } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
      onProcesses: (p) => writeRecord(workDir, { ...base, ...p }),
    });
    const s = src;
    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= (async () => {
        try {
          await browse.close();
        } finally {
          await s.close();
          await cleanUp(workDir, undefined);
        }
      })());
    return { browse, pointId: src.pointId, workDir, close };
  } catch (err) {
    await src?.close().catch(() => undefined);
    await cleanUp(workDir, undefined).catch(() => undefined);
    throw err;
  }
}
