import { stat } from 'node:fs/promises';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { parseNbdUri } from '../nbd/nbd-client.js';
import { serveImage, sniffFormat, startStorageDaemon, type StorageDaemon } from './image-source.js';
import { isQmpUri, openRunningDrive, qmpUri } from './running-vm-source.js';
import { NbdDiskSource } from './nbd-disk-source.js';
import { RawDiskSource, type DiskSource } from './raw-disk-source.js';

/** How a run found what changed on a disk: recorded in each restore point. */
export interface ChangeTracking {
  readonly method: 'full' | 'hash' | 'cbt';
  /** The bitmap that tracks writes from this point on (the next run's CBT), when there is one. */
  readonly bitmap?: string;
  /** Why CBT was not used, when it was asked for. */
  readonly note?: string;
}

export interface OpenedSource {
  readonly source: DiskSource;
  /** The source's format: raw, qcow2, vmdk, … or nbd for an NBD export. */
  readonly format: string;
  readonly tracking: ChangeTracking;
  /**
   * Called once the run's point is committed and the source closed: retires
   * the bitmaps older points used. Never fails: bitmaps it could not remove
   * are removed by the next run's.
   */
  readonly committed: () => Promise<void>;
  /** A running VM's vCPUs and memory, as QMP tells them. */
  readonly facts?: { readonly vcpus: number; readonly memoryMiB: number };
}

export const isNbdUri = (spec: string): boolean => /^nbd(\+unix)?:\/\//.test(spec);

/**
 * Opens a job's disk for one run: a raw file or device directly; an image
 * (qcow2, vmdk, vhdx, vdi…) through a private qemu-nbd; an nbd:// export
 * through the NBD client.
 *
 * With `cbt` (qcow2 images), the image is opened by a private
 * qemu-storage-daemon and handled over QMP like a running VM's drive
 * (running-vm-source.ts): two persistent bitmaps (one a check twin) are
 * added for the new point before anything is read, so no write can fall
 * between two points, and the previous point's bitmaps, once checked
 * (present, consistent, recording, equal to their twin, so a `bitmap
 * --clear` of one shows), say which blocks to read. Anything wrong, and the
 * run compares hashes instead and says why: changes are never missed. A
 * run removes the job's bitmaps older than the previous point's.
 */
export async function openDiskSource(
  spec: string,
  opts: {
    format?: string | undefined;
    cbt?: { jobId: string; pointId: string; previous: ChangeTracking | undefined } | undefined;
    /** The image's storage daemon, started ahead by startDaemonEarly (CBT only): used instead of starting one, or stopped. */
    daemon?: Promise<StorageDaemon | undefined> | undefined;
  },
): Promise<OpenedSource> {
  let early = opts.daemon;
  // The early daemon holds the image's write lock: stopped before anything else opens the image (its format changed
  // since it was started), and at the end if nothing took it. Its stop never fails the opening.
  const release = async (): Promise<void> => {
    const d = early;
    early = undefined;
    await d?.then((daemon) => daemon?.stop()).catch(() => undefined);
  };
  const take = async (): Promise<StorageDaemon> => {
    const d = early;
    early = undefined;
    return (await d) ?? startStorageDaemon(spec);
  };
  try {
    return await openDiskSourceWith(spec, opts, { take, release });
  } finally {
    await release();
  }
}

/**
 * Starts, ahead of the rest of a run, the storage daemon a CBT run opens a
 * qcow2 image through: it comes up (20–40 ms) while the run reads its own
 * files. Undefined when the disk is no qcow2 file or is not there (its
 * opening says why). A failed start rejects as the start in openDiskSource
 * would, and its opening handles it the same way (a locked image is tried
 * read-only there); the promise is handled at once, so nobody need await it.
 */
export function startDaemonEarly(spec: string, format: string | undefined): Promise<StorageDaemon | undefined> {
  const started = (async () => {
    if (isNbdUri(spec) || isQmpUri(spec)) return undefined;
    const st = await stat(spec).catch(() => undefined);
    if (st === undefined || (format ?? (st.isFile() ? await sniffFormat(spec) : 'raw')) !== 'qcow2') return undefined;
    return startStorageDaemon(spec);
  })();
  started.catch(() => undefined);
  return started;
}

async function openDiskSourceWith(
  spec: string,
  opts: { format?: string | undefined; cbt?: { jobId: string; pointId: string; previous: ChangeTracking | undefined } | undefined },
  daemon: { readonly take: () => Promise<StorageDaemon>; readonly release: () => Promise<void> },
): Promise<OpenedSource> {
  const noop = async (): Promise<void> => undefined;
  const hashOr = (why: string): ChangeTracking => (opts.cbt?.previous === undefined ? { method: 'full', note: why } : { method: 'hash', note: why });
  if (isNbdUri(spec)) {
    const source = await NbdDiskSource.open(spec, parseNbdUri(spec));
    return {
      source,
      format: 'nbd',
      tracking: opts.cbt ? hashOr('CBT on an nbd:// source needs --qmp (Lifeboat manages the bitmaps)') : plain(opts),
      committed: noop,
    };
  }
  const st = await stat(spec).catch((err: NodeJS.ErrnoException) => {
    throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `disk ${spec} cannot be opened: ${err.code ?? String(err)}; check the path given with --disk`, {
      cause: err,
      details: { disk: spec },
    });
  });
  const format = opts.format ?? (st.isFile() ? await sniffFormat(spec) : 'raw');
  if (!(opts.cbt && format === 'qcow2')) await daemon.release();
  if (format === 'raw') {
    return {
      source: await RawDiskSource.open(spec),
      format,
      tracking: opts.cbt ? hashOr('CBT needs a qcow2 image (raw files have no dirty bitmaps)') : plain(opts),
      committed: noop,
    };
  }
  if (opts.cbt && format === 'qcow2') {
    // Bitmaps are managed over QMP by a private qemu-storage-daemon: one process for the whole run.
    try {
      const started = await daemon.take();
      return await openRunningDrive(qmpUri(started.qmpSocket, started.node), {
        jobId: opts.cbt.jobId,
        pointId: opts.cbt.pointId,
        previous: opts.cbt.previous,
        cbt: true,
        offline: { onClose: started.stop, path: spec, nbdSocket: started.nbdSocket },
      });
    } catch (err) {
      if (!isLifeboatError(err, 'LFB_ERR_CBT')) throw err;
      const served = await serveImage(spec, format);
      const source = await NbdDiskSource.open(spec, served.address, { onClose: served.stop });
      return { source, format, tracking: hashOr(err.message), committed: noop };
    }
  }
  const served = await serveImage(spec, format);
  const source = await NbdDiskSource.open(spec, served.address, { onClose: served.stop });
  return { source, format, tracking: opts.cbt ? hashOr(`CBT needs a qcow2 image, not ${format}`) : plain(opts), committed: noop };
}

function plain(opts: { cbt?: { previous: ChangeTracking | undefined } | undefined }): ChangeTracking {
  return { method: opts.cbt?.previous === undefined ? 'full' : 'hash' };
}
