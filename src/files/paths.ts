import { posix } from 'node:path';
import { LifeboatError } from '../core/errors.js';

/**
 * Names of what the appliance sees, as `lifeboat files` shows them: disks in
 * the order the point holds them (`disk0`), partitions (`disk0p2`), LVM
 * logical volumes (`vg0/root`). libguestfs names the n-th drive added
 * /dev/sd<letter(s)> and its partitions /dev/sdXN, LVs /dev/VG/LV.
 */
export function fsIdOf(device: string, disks: readonly string[]): string | undefined {
  const lv = /^\/dev\/([^/]+)\/([^/]+)$/.exec(device);
  if (lv && lv[1] !== 'mapper') return `${lv[1]}/${lv[2]}`;
  const m = /^(\/dev\/[a-z]+?)(\d*)$/.exec(device);
  if (!m) return undefined;
  const index = disks.indexOf(m[1]!);
  if (index < 0) return undefined;
  return m[2] === '' ? `disk${index}` : `disk${index}p${m[2]}`;
}

/** A file system id as a folder name inside the appliance's mount tree (and of `files mount`): LVs nest as vg/lv. */
export function mountDirOf(fsId: string): string {
  return `/${fsId}`;
}

export interface GuestPath {
  /** undefined: the point's only file system. */
  readonly fsId: string | undefined;
  /** Absolute and normalised, without `..` above the root. */
  readonly path: string;
}

const FS_ID = /^(disk\d+(p\d+)?|[A-Za-z0-9+_.-]+\/[A-Za-z0-9+_.-]+)$/;

/** `disk0p2:/etc/fstab`, `vg0/root:/home`, or `/etc` (the only file system). */
export function parseGuestPath(text: string): GuestPath {
  const colon = text.indexOf(':');
  const fsId = colon >= 0 ? text.slice(0, colon) : undefined;
  const rest = colon >= 0 ? text.slice(colon + 1) : text;
  if (fsId !== undefined && !FS_ID.test(fsId))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `"${fsId}" is not a file system id (e.g. disk0p2 or vg0/root; \`lifeboat files ls\` lists them)`);
  const raw = rest === '' ? '/' : rest;
  if (!raw.startsWith('/')) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `"${text}": the path must be absolute (e.g. disk0p2:/etc/fstab)`);
  if (raw.includes('\0')) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a path may not hold a NUL byte');
  // normalize resolves `..` against the root, so a path never leaves its file system's folder.
  return { fsId, path: posix.normalize(raw).replace(/(.)\/$/, '$1') };
}

/** The file system a path names: its own id, or the only one there is. */
export function pickFs(p: GuestPath, fsIds: readonly string[]): string {
  if (p.fsId !== undefined) {
    if (!fsIds.includes(p.fsId))
      throw new LifeboatError('LFB_ERR_FS_NOT_FOUND', `the point has no mountable file system "${p.fsId}" (it has: ${fsIds.join(', ') || 'none'})`, {
        details: { fsId: p.fsId },
      });
    return p.fsId;
  }
  if (fsIds.length === 1) return fsIds[0]!;
  throw new LifeboatError(
    'LFB_ERR_FS_NOT_FOUND',
    `the point holds ${fsIds.length} file systems: name one, e.g. ${fsIds[0] ?? 'disk0p1'}:${p.path} (they are: ${fsIds.join(', ')})`,
  );
}
