import { createRequire } from 'node:module';

/** lifeboat_native.node (native/, built by npm install): what Node's fs does not expose. */
export interface NativeHelper {
  /** Data extents by lseek(SEEK_DATA/SEEK_HOLE), as [start0, end0, start1, end1, …]; null where the file system has no SEEK_DATA. */
  dataExtents(fd: number, start: number, end: number, maxExtents: number): number[] | null;
  /** preadv2(RWF_NOWAIT) into 1 to 8 Uint8Arrays: bytes read from the page cache, or -errno (-EAGAIN: it would wait for the disk); throws on a position that is not a whole number from 0 to 2^53-1 or a buffer that is not a Uint8Array. */
  readNow(fd: number, position: number, buffers: readonly Uint8Array[]): number;
}

let helper: NativeHelper | null | undefined;

/**
 * The native helper, or null if it was not built (no compiler when npm
 * install ran) or `LIFEBOAT_NATIVE=off` turns it off (to measure or test the
 * fallbacks): then callers take a slower path, never a wrong one.
 */
export function nativeHelper(): NativeHelper | null {
  if (helper === undefined) {
    if (process.env['LIFEBOAT_NATIVE'] === 'off') {
      helper = null;
      return helper;
    }
    try {
      helper = createRequire(import.meta.url)('../../../build/Release/lifeboat_native.node') as NativeHelper;
    } catch {
      helper = null;
    }
  }
  return helper;
}

/** What a user is told when the helper is missing: what is slower, and how to build it. */
export const NATIVE_HELPER_MISSING =
  'the native helper (build/Release/lifeboat_native.node) is not built or is turned off: backups read the holes of sparse disk images, and small reads take the thread pool (`npm rebuild` builds it; it needs make and a C compiler)';
