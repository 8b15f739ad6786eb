import { createRequire } from 'node:module';

interface Native {
  dataExtents(fd: number, start: number, end: number, maxExtents: number): number[] | null;
}

/**
 * The native SEEK_DATA/SEEK_HOLE helper (native/extents.c, built by npm
 * install). If it was not built, callers fall back to reading every byte:
 * slower on sparse images, never wrong.
 */
let native: Native | null | undefined;
function load(): Native | null {
  if (native === undefined) {
    try {
      native = createRequire(import.meta.url)('../../../build/Release/lifeboat_native.node') as Native;
    } catch {
      native = null;
    }
  }
  return native;
}

/**
 * The first data extent at or after `pos` in an open file, as [start, end),
 * or undefined if only holes remain before `end`; null if unknown (no helper,
 * or a filesystem without SEEK_DATA).
 */
export function nextDataExtent(fd: number, pos: number, end: number): [number, number] | undefined | null {
  const n = load();
  if (n === null) return null;
  const r = n.dataExtents(fd, pos, end, 1);
  if (r === null) return null;
  if (r.length < 2) return undefined;
  return [r[0]!, r[1]!];
}

export function sparseSupport(): boolean {
  return load() !== null;
}
