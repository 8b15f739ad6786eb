/** Where `restore` writes a point's disks: which disks, into which files, in which format. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { PointInfo } from '../repository/index.js';
import { RESTORE_FORMATS, formatFromExtension, type RestoreFormat } from '../restore/index.js';

/** A disk of a point by index or name (the first when none is named). */
export function diskIndexOf(ref: string | undefined, names: readonly string[]): number {
  if (ref === undefined) return 0;
  if (/^\d+$/.test(ref)) {
    const i = Number(ref);
    if (i < names.length) return i;
  }
  const byName = names.indexOf(ref);
  if (byName >= 0) return byName;
  throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `no disk "${ref}" in this point (disks: ${names.map((n, i) => `${i}=${n}`).join(', ')})`);
}

export interface RestorePlan {
  /** The disks to write, as `--disk` names them. */
  readonly disks: readonly string[];
  /** The file and format of one disk; `sourceFormat` is the format it was backed up from. */
  target(diskName: string, sourceFormat: string | undefined): { path: string; format: RestoreFormat };
}

/**
 * `--to` names a folder when it ends in '/' or is one: each disk is written in
 * it as <disk>.<format>. A point of several disks needs a folder, or one disk
 * chosen with `--disk`.
 */
export async function planRestore(p: PointInfo, opts: { to: string; disk?: string | undefined; format?: RestoreFormat | undefined }): Promise<RestorePlan> {
  const diskCount = p.diskSizes.length;
  const disks = opts.disk !== undefined ? [opts.disk] : diskCount === 1 ? ['0'] : Array.from({ length: diskCount }, (_, i) => String(i));
  const intoDir = opts.to.endsWith('/') || (await stat(opts.to).catch(() => undefined))?.isDirectory() === true;
  if (intoDir && !(await stat(opts.to).catch(() => undefined))?.isDirectory())
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--to ${opts.to} names a folder that does not exist; create it first`, { details: { to: opts.to } });
  if (!intoDir && disks.length > 1)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `point ${p.id} has ${diskCount} disks: --to must be an existing folder (each disk is written as <disk>.<format>), or choose one with --disk`,
    );
  return {
    disks,
    target(diskName, sourceFormat) {
      // --format, else the target's extension, else the format the disk was backed up from.
      const format =
        opts.format ??
        (intoDir ? undefined : formatFromExtension(opts.to)) ??
        ((RESTORE_FORMATS as readonly string[]).includes(sourceFormat ?? '') ? (sourceFormat as RestoreFormat) : 'raw');
      return { path: intoDir ? resolve(opts.to, `${diskName}.${format}`) : resolve(opts.to), format };
    },
  };
}
