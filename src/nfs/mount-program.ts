import type { Procedure, RpcProgram } from '../rpc/rpc-server.js';
import { AUTH_NONE, AUTH_SYS } from '../rpc/rpc-message.js';
import type { NfsFileSystem } from './file-system.js';

/** MOUNT v3 (RFC 1813 Appendix I). */
export const MOUNT_PROGRAM = 100005;
export const MOUNT_V3 = 3;
export const MNT3_OK = 0;
export const MNT3ERR_NOENT = 2;
export const MNT3ERR_ACCES = 13;
export const MNT3ERR_NOTDIR = 20;
export const MNT3ERR_NAMETOOLONG = 63;
const MNTPATHLEN = 1024;

/**
 * An export, or a folder below one (libnfs mounts a directory URL's whole
 * path): walks the components with LOOKUP. Returns the handle or an MNT3 error.
 */
async function resolveMountPath(fs: NfsFileSystem, path: string): Promise<Buffer | number> {
  const exp = fs.exports().find((e) => path === e || path.startsWith(`${e}/`));
  if (exp === undefined) return MNT3ERR_NOENT;
  let h = fs.mount(exp);
  if (!h) return MNT3ERR_NOENT;
  for (const part of path
    .slice(exp.length)
    .split('/')
    .filter((p) => p !== '')) {
    if (part === '..' || part === '.') return MNT3ERR_NOENT;
    try {
      h = await fs.lookup(h, part);
    } catch {
      return MNT3ERR_NOENT;
    }
  }
  try {
    if ((await fs.getattr(h)).type !== 'dir') return MNT3ERR_NOTDIR;
  } catch {
    return MNT3ERR_NOENT;
  }
  return h;
}

/**
 * MNT answers the export's root handle and the flavors we accept (AUTH_SYS
 * first: ESXi and Linux use it). The server keeps no mount list: UMNT is
 * accepted and forgotten (clients ignore its result), DUMP is empty.
 */
export function mountProgram(fs: NfsFileSystem): RpcProgram {
  const procs = new Map<number, Procedure>([
    [0, (a) => a.end()],
    [
      1,
      async (a, out) => {
        const raw = a.opaque(MNTPATHLEN + 1, 'dirpath');
        a.end();
        if (raw.length > MNTPATHLEN) {
          out.u32(MNT3ERR_NAMETOOLONG);
          return;
        }
        const path = raw.toString('utf8').replace(/\/+$/, '') || '/';
        const found = await resolveMountPath(fs, path);
        if (typeof found === 'number') {
          out.u32(found);
          return;
        }
        out.u32(MNT3_OK).opaque(found).u32(2).u32(AUTH_SYS).u32(AUTH_NONE);
      },
    ],
    [
      2,
      (a, out) => {
        a.end();
        out.bool(false);
      },
    ],
    [
      3,
      (a) => {
        a.opaque(MNTPATHLEN, 'dirpath');
        a.end();
      },
    ],
    [4, (a) => a.end()],
    [
      5,
      (a, out) => {
        a.end();
        // exports: each export with an empty group list (everyone the allow list admits).
        for (const e of fs.exports()) out.bool(true).string(e).bool(false);
        out.bool(false);
      },
    ],
  ]);
  return { prog: MOUNT_PROGRAM, name: 'mount', versions: new Map([[MOUNT_V3, procs]]) };
}
