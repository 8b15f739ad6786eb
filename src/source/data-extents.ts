import { nativeHelper } from '../core/native.js';

/**
 * The first data extent at or after `pos` in an open file, as [start, end),
 * or undefined if only holes remain before `end`; null if unknown (no helper,
 * or a filesystem without SEEK_DATA).
 */
export function nextDataExtent(fd: number, pos: number, end: number): [number, number] | undefined | null {
  const n = nativeHelper();
  if (n === null) return null;
  const r = n.dataExtents(fd, pos, end, 1);
  if (r === null) return null;
  if (r.length < 2) return undefined;
  return [r[0]!, r[1]!];
}

export function sparseSupport(): boolean {
  return nativeHelper() !== null;
}
