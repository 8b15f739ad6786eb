import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { qemuImg } from '../core/qemu-img.js';
import { LifeboatError, fromFsError } from '../core/errors.js';
import type { VirtualDisk } from '../repository/virtual-disk.js';

export const RESTORE_FORMATS = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi'] as const;
export type RestoreFormat = (typeof RESTORE_FORMATS)[number];

/** The image format a restore target's name asks for (web01.qcow2 → qcow2, .img and .raw → raw), if it names one. */
export function formatFromExtension(path: string): RestoreFormat | undefined {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase();
  if (ext === 'img') return 'raw';
  return (RESTORE_FORMATS as readonly string[]).includes(ext ?? '') ? (ext as RestoreFormat) : undefined;
}

export interface RestoreProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/**
 * Writes a virtual disk to a file or block device. A raw file target is
 * sparse (zero blocks are not written) and appears under its name only when
 * complete; qcow2, vmdk, vhdx and vdi go through `qemu-img convert`. The
 * backup is only read.
 */
export async function restoreDisk(
  disk: VirtualDisk,
  target: string,
  opts: { format: RestoreFormat; force: boolean; onProgress?: (p: RestoreProgress) => void },
): Promise<{ bytesWritten: number }> {
  const existing = await stat(target).catch(() => undefined);
  if (existing && !opts.force) {
    throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${target} already exists; pass --force to overwrite it`, { details: { target } });
  }
  if (existing?.isDirectory()) throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${target} is a directory`, { details: { target } });
  if (existing?.isBlockDevice()) {
    if (opts.format !== 'raw') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a block device target takes --format raw');
    return writeRaw(disk, target, { sparse: false, truncate: false, onProgress: opts.onProgress });
  }
  const partial = join(dirname(target), `.${basename(target)}.partial`);
  await unlink(partial).catch(() => undefined);
  try {
    if (opts.format === 'raw') {
      const r = await writeRaw(disk, partial, { sparse: true, truncate: true, onProgress: opts.onProgress });
      await rename(partial, target);
      return r;
    }
    const rawTmp = `${partial}.raw`;
    try {
      const r = await writeRaw(disk, rawTmp, { sparse: true, truncate: true, onProgress: opts.onProgress });
      await qemuImg(['convert', '-q', '-f', 'raw', '-O', opts.format, rawTmp, partial], `${opts.format} output`);
      await rename(partial, target);
      return r;
    } finally {
      await unlink(rawTmp).catch(() => undefined);
    }
  } catch (err) {
    await unlink(partial).catch(() => undefined);
    throw err;
  }
}

async function writeRaw(
  disk: VirtualDisk,
  path: string,
  opts: { sparse: boolean; truncate: boolean; onProgress?: ((p: RestoreProgress) => void) | undefined },
): Promise<{ bytesWritten: number }> {
  let fh;
  try {
    fh = await open(path, opts.truncate ? 'w' : 'r+');
  } catch (err) {
    throw fromFsError(err, 'open restore target', path);
  }
  let bytesWritten = 0;
  try {
    if (opts.truncate) await fh.truncate(disk.size);
    const bs = disk.blockSize;
    const count = Math.ceil(disk.size / bs);
    const blocks: Iterable<number> = opts.sparse
      ? disk.allocatedBlocks()
      : (function* () {
          for (let i = 0; i < count; i++) yield i;
        })();
    let lastReport = 0;
    for await (const { blockIndex, data } of disk.readBlocks(blocks)) {
      const off = blockIndex * bs;
      await fh.write(data, 0, data.length, off);
      bytesWritten += data.length;
      if (opts.onProgress && off - lastReport >= 64 * 1024 * 1024) {
        lastReport = off;
        opts.onProgress({ bytesDone: off, bytesTotal: disk.size });
      }
    }
    await fh.sync();
    opts.onProgress?.({ bytesDone: disk.size, bytesTotal: disk.size });
  } catch (err) {
    throw fromFsError(err, 'write restore target', path);
  } finally {
    await fh.close();
  }
  return { bytesWritten };
}
