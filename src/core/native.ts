import { createRequire } from 'node:module';

/** lifeboat_native.node (native/, built by npm install): what Node's fs does not expose. */
export interface NativeHelper {
  /** Data extents by lseek(SEEK_DATA/SEEK_HOLE), as [start0, end0, start1, end1, …]; null where the file system has no SEEK_DATA. */
  dataExtents(fd: number, start: number, end: number, maxExtents: number): number[] | null;
  /** preadv2(RWF_NOWAIT) into 1 to 8 buffers: bytes read from the page cache, or -errno (-EAGAIN: it would wait for the disk). */
  readNow(fd: number, position: number, buffers: readonly Uint8Array[]): number;
}

let helper: NativeHelper | null | undefined;

/**
 * The native helper, or null if it was not built (no compiler when npm
 * install ran): then callers take a slower path, never a wrong one.
 */
export function nativeHelper(): NativeHelper | null {
  if (helper === undefined) {
    try {
      helper = createRequire(import.meta.url)('../../../build/Release/lifeboat_native.node') as NativeHelper;
    } catch {
      helper = null;
    }
  }
  return helper;
}
