import { stat } from 'node:fs/promises';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { qemuImg } from '../core/qemu-img.js';
import { parseNbdUri } from '../nbd/nbd-client.js';
import { imageInfo, serveImage, sniffFormat, type ImageInfo } from './image-source.js';
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

/** The bitmap a job keeps in an image for its point `pointId` (and a check twin): several jobs may share an image. */
export const cbtBitmap = (jobId: string, pointId: string): string => `${cbtPrefix(jobId)}${pointId}`;
const cbtPrefix = (jobId: string): string => `lifeboat-${jobId.slice(0, 8)}-`;
const twin = (bitmap: string): string => `${bitmap}-check`;

/**
 * Opens a job's disk for one run: a raw file or device directly; an image
 * (qcow2, vmdk, vhdx, vdi…) through a private qemu-nbd; an nbd:// export
 * through the NBD client.
 *
 * With `cbt` (qcow2 images): two enabled persistent bitmaps are added for
 * the new point before anything is read, so no write can fall between two
 * points, and the bitmaps of the previous point are read to skip unchanged
 * blocks. They are checked first: present, not marked in-use (a crash while
 * a VM wrote), and equal to their twin (a `bitmap --clear` of one shows).
 * Anything wrong, and the run compares hashes instead and says why: changes
 * are never missed. Old bitmaps are removed only after the point commits.
 */
export async function openDiskSource(spec: string, opts: { format?: string | undefined; cbt?: { jobId: string; pointId: string; previous: ChangeTracking | undefined } | undefined }): Promise<OpenedSource> {
  const noop = async (): Promise<void> => undefined;
  const hashOr = (why: string): ChangeTracking => (opts.cbt?.previous === undefined ? { method: 'full', note: why } : { method: 'hash', note: why });
  if (isNbdUri(spec)) {
    const source = await NbdDiskSource.open(spec, parseNbdUri(spec));
    return { source, format: 'nbd', tracking: opts.cbt ? hashOr('CBT on an nbd:// source needs --qmp (Lifeboat manages the bitmaps)') : plain(opts), committed: noop };
  }
  const st = await stat(spec).catch((err: NodeJS.ErrnoException) => {
    throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `disk ${spec} cannot be opened: ${err.code ?? String(err)}; check the path given with --disk`, { cause: err, details: { disk: spec } });
  });
  const format = opts.format ?? (st.isFile() ? await sniffFormat(spec) : 'raw');
  if (format === 'raw') {
    return { source: await RawDiskSource.open(spec), format, tracking: opts.cbt ? hashOr('CBT needs a qcow2 image (raw files have no dirty bitmaps)') : plain(opts), committed: noop };
  }
  let tracking: ChangeTracking = plain(opts);
  let readBitmaps: string[] = [];
  let committed = noop;
  if (opts.cbt) {
    const info = await imageInfo(spec, format);
    const next = cbtBitmap(opts.cbt.jobId, opts.cbt.pointId);
    const why = format !== 'qcow2' ? `CBT needs a qcow2 image, not ${format}` : checkBitmap(info, opts.cbt.previous?.bitmap);
    if (format === 'qcow2') {
      try {
        for (const b of [next, twin(next)]) if (!info.bitmaps.some((x) => x.name === b)) await qemuImg(['bitmap', '--add', '--enable', '-f', 'qcow2', spec, b], 'changed-block tracking');
        committed = () => retireBitmaps(spec, cbtPrefix(opts.cbt!.jobId), next).catch(() => undefined);
        tracking = why === undefined ? { method: 'cbt', bitmap: next } : { ...hashOr(why), bitmap: next };
        if (why === undefined) readBitmaps = [opts.cbt.previous!.bitmap!, twin(opts.cbt.previous!.bitmap!)];
      } catch (err) {
        if (!isLifeboatError(err)) throw err;
        tracking = hashOr(`bitmap ${next} cannot be added (${err.message.split('\n')[0]}); is a running VM using the image? Use --qmp`);
      }
    } else tracking = hashOr(why!);
  }
  const served = await serveImage(spec, format, readBitmaps);
  try {
    const source = await NbdDiskSource.open(spec, served.address, { dirtyBitmaps: readBitmaps, onClose: served.stop });
    return { source, format, tracking, committed };
  } catch (err) {
    if (!isLifeboatError(err, 'LFB_ERR_CBT')) throw err;
    // The bitmap and its twin disagree: read everything and compare hashes.
    const again = await serveImage(spec, format, []);
    const source = await NbdDiskSource.open(spec, again.address, { onClose: again.stop });
    return { source, format, tracking: { ...hashOr(err.message), ...(tracking.bitmap ? { bitmap: tracking.bitmap } : {}) }, committed };
  }
}

function plain(opts: { cbt?: { previous: ChangeTracking | undefined } | undefined }): ChangeTracking {
  return { method: opts.cbt?.previous === undefined ? 'full' : 'hash' };
}

/** Why the previous point's bitmap cannot be trusted, or undefined if it can. */
function checkBitmap(info: ImageInfo, name: string | undefined): string | undefined {
  if (name === undefined) return 'no bitmap from the previous point (the first CBT run, or the previous run could not add one)';
  for (const n of [name, twin(name)]) {
    const b = info.bitmaps.find((x) => x.name === n);
    if (!b) return `bitmap ${n} is missing (the image was replaced or the bitmap removed)`;
    if (b.flags.includes('in-use')) return `bitmap ${n} is inconsistent (the image was not closed cleanly while it tracked writes)`;
    if (!b.flags.includes('auto')) return `bitmap ${n} is disabled: writes may have gone untracked`;
  }
  return undefined;
}

/** Removes every bitmap of the job in the image but the newest point's. */
async function retireBitmaps(path: string, prefix: string, keep: string): Promise<void> {
  const info = await imageInfo(path, 'qcow2');
  for (const b of info.bitmaps) {
    if (!b.name.startsWith(prefix) || b.name === keep || b.name === twin(keep)) continue;
    await qemuImg(['bitmap', '--remove', '-f', 'qcow2', path, b.name], 'changed-block tracking');
  }
}
