import { randomBytes } from 'node:crypto';
import type { Procedure, RpcProgram } from '../rpc/rpc-server.js';
import type { XdrWriter } from '../rpc/xdr.js';
import type { NfsFileSystem } from './file-system.js';
import { NfsError } from './nfs-errors.js';
import { access, fsinfo, fsstat, getattr, pathconf, readlink, setattr } from './procedures/attributes.js';
import { type NfsContext, type NfsProcedure } from './procedures/context.js';
import { readdir, readdirplus } from './procedures/directories.js';
import { commit, read, write } from './procedures/io.js';
import { create, link, lookup, mkdir, mknod, remove, rename, rmdir, symlink } from './procedures/names.js';
import { NFS3_FHSIZE, NFS_PROGRAM, NFS_V3 } from './wire.js';

/** The shape of a procedure's failure body when nothing is known (RFC 1813 §3.3). */
type EmptyFailure = 'none' | 'attr' | 'wcc' | 'wcc2' | 'attr+wcc';

function emptyFailure(w: XdrWriter, kind: EmptyFailure): void {
  switch (kind) {
    case 'none':
      return;
    case 'attr':
      w.bool(false);
      return;
    case 'wcc':
      w.bool(false).bool(false);
      return;
    case 'wcc2':
      w.bool(false).bool(false).bool(false).bool(false);
      return;
    case 'attr+wcc':
      w.bool(false).bool(false).bool(false);
      return;
  }
}

/** RFC 1813 §3.3: the procedure table, built here (not registered at import time). */
const TABLE: readonly [number, NfsProcedure | null, EmptyFailure][] = [
  [0, null, 'none'],
  [1, getattr, 'none'],
  [2, setattr, 'wcc'],
  [3, lookup, 'attr'],
  [4, access, 'attr'],
  [5, readlink, 'attr'],
  [6, read, 'attr'],
  [7, write, 'wcc'],
  [8, create, 'wcc'],
  [9, mkdir, 'wcc'],
  [10, symlink, 'wcc'],
  [11, mknod, 'wcc'],
  [12, remove, 'wcc'],
  [13, rmdir, 'wcc'],
  [14, rename, 'wcc2'],
  [15, link, 'attr+wcc'],
  [16, readdir, 'attr'],
  [17, readdirplus, 'attr'],
  [18, fsstat, 'attr'],
  [19, fsinfo, 'attr'],
  [20, pathconf, 'attr'],
  [21, commit, 'wcc'],
];

/**
 * NFSv3 as an RPC program over a file system. One write verifier per
 * program instance, i.e. per server start (RFC 1813 §3.3.7).
 */
export interface NfsProgramOptions {
  readonly fsid?: bigint;
  readonly onServerError?: (err: unknown, status: number) => void;
  /**
   * Told of every call with the handle it names first (every NFSv3
   * procedure's arguments start with one) and the client's address: how
   * the server knows who still uses a file, in a protocol without opens.
   */
  readonly onCall?: (handle: Buffer, clientAddress: string) => void;
}

export function nfsProgram(fs: NfsFileSystem, opts: NfsProgramOptions = {}): RpcProgram {
  const ctx: NfsContext = {
    fs,
    fsid: opts.fsid ?? 0x4c464254n,
    writeVerifier: randomBytes(8),
    ...(opts.onServerError ? { onServerError: opts.onServerError } : {}),
  };
  const procs = new Map<number, Procedure>();
  for (const [num, proc, failure] of TABLE) {
    if (proc === null) {
      procs.set(num, (a) => a.end());
      continue;
    }
    const onCall = opts.onCall;
    procs.set(num, async (args, out, call) => {
      if (onCall) {
        try {
          onCall(args.fork().opaque(NFS3_FHSIZE, 'nfs_fh3'), call.remoteAddress);
        } catch {
          // A malformed handle: the procedure itself answers it.
        }
      }
      try {
        await proc(args, out, ctx);
      } catch (err) {
        // Argument checks that fail before the procedure could answer (bad handle, bad name).
        if (!(err instanceof NfsError)) throw err;
        out.u32(err.status);
        emptyFailure(out, failure);
      }
    });
  }
  return { prog: NFS_PROGRAM, name: 'nfs', versions: new Map([[NFS_V3, procs]]) };
}
