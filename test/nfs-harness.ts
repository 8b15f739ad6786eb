import { randomUUID } from 'node:crypto';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../src/blockdev/block-device.js';
import { systemClock } from '../src/core/clock.js';
import { MOUNT_PROGRAM, NFS_PROGRAM, mountProgram, nfsProgram, type NfsFileSystem } from '../src/nfs/index.js';
import { DatastoreFileSystem, type DatastoreFsOptions } from '../src/recovery/datastore-fs.js';
import type { RpcProgram } from '../src/rpc/rpc-server.js';
import { XdrError, XdrReader, XdrWriter } from '../src/rpc/xdr.js';

/**
 * Test support for the NFS tests that need no listening port: calls the MOUNT
 * and NFS procedures in process, the way RpcServer dispatches them (an
 * XdrError is GARBAGE_ARGS; anything else escaping a procedure would be
 * SYSTEM_ERR and fails the test).
 */
export class InProcessNfs {
  private readonly programs: Map<number, RpcProgram>;

  constructor(readonly fs: NfsFileSystem) {
    this.programs = new Map([
      [NFS_PROGRAM, nfsProgram(fs)],
      [MOUNT_PROGRAM, mountProgram(fs)],
    ]);
  }

  /** The reply body after the accept status, or 'GARBAGE_ARGS'. */
  async call(prog: number, proc: number, args: XdrWriter | Buffer): Promise<XdrReader | 'GARBAGE_ARGS'> {
    const handler = this.programs.get(prog)?.versions.get(3)?.get(proc);
    assert.ok(handler, `procedure ${prog}/${proc} exists`);
    const out = new XdrWriter();
    const bytes = Buffer.isBuffer(args) ? args : args.toBuffer();
    try {
      await handler(new XdrReader(bytes), out, { cred: { flavor: 'none' }, remoteAddress: '127.0.0.1', remotePort: 1 });
    } catch (err) {
      if (err instanceof XdrError) return 'GARBAGE_ARGS';
      throw err;
    }
    // As RpcServer over UDP: the reply is copied out, then what it was lent goes back.
    const reply = out.toBuffer();
    out.sent();
    return new XdrReader(reply);
  }

  /** An NFS call whose arguments must decode: the reply's nfsstat3 and the rest of the reply. */
  async nfs(proc: number, args: XdrWriter): Promise<{ status: number; r: XdrReader }> {
    const r = await this.call(NFS_PROGRAM, proc, args);
    assert.notEqual(r, 'GARBAGE_ARGS', `NFS procedure ${proc}: arguments decode`);
    const reader = r as XdrReader;
    return { status: reader.u32(), r: reader };
  }
}

/** sattr3 with only a mode set. */
export function sattrMode(w: XdrWriter, mode: number | undefined): XdrWriter {
  if (mode === undefined) w.bool(false);
  else w.bool(true).u32(mode);
  return w.bool(false).bool(false).bool(false).u32(0).u32(0);
}

/** An in-memory session disk whose writes can be made to fail with a chosen error. */
export class FailingDisk implements BlockDevice {
  readonly bytes: Buffer;
  failWith: unknown;
  constructor(readonly size: number) {
    this.bytes = Buffer.alloc(size);
  }
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    if (this.failWith !== undefined) throw this.failWith;
    data.copy(this.bytes, offset);
  }
  async flush(): Promise<void> {
    if (this.failWith !== undefined) throw this.failWith;
  }
  async close(): Promise<void> {}
}

export interface TestDatastore {
  readonly fs: DatastoreFileSystem;
  readonly nfs: InProcessNfs;
  readonly filesDir: string;
  readonly disk: FailingDisk;
  readonly root: Buffer;
  readonly session: Buffer;
  readonly diskHandle: Buffer;
}

/** A datastore with one session "vm1" (files in `dir`/files, one 1 MiB disk "vm1-flat.vmdk"). */
export async function testDatastore(dir: string, prepare?: (filesDir: string) => Promise<void>, opts: DatastoreFsOptions = {}): Promise<TestDatastore> {
  const filesDir = join(dir, 'files');
  await mkdir(filesDir, { recursive: true });
  await prepare?.(filesDir);
  const fs = new DatastoreFileSystem('/lifeboat', dir, systemClock, opts);
  const disk = new FailingDisk(1 << 20);
  await fs.addSession({ id: randomUUID(), name: 'vm1', filesDir, disks: [{ name: 'vm1', device: disk, allocatedBytes: () => 0, mtimeMs: 0 }], createdMs: 0 });
  const root = fs.mount('/lifeboat')!;
  const session = await fs.lookup(root, 'vm1');
  const diskHandle = await fs.lookup(session, 'vm1-flat.vmdk');
  return { fs, nfs: new InProcessNfs(fs), filesDir, disk, root, session, diskHandle };
}

/** A temporary folder (test/helpers.ts's tempDir without importing the whole application). */
export async function nfsTempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-nfs-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

const require = createRequire(import.meta.url);

/**
 * Counts calls of node:fs/promises functions made by any module (the ESM
 * bindings are updated with syncBuiltinESMExports), to check a cost without
 * timing it. restore() puts the originals back.
 */
export function countFsCalls(names: readonly string[] = ['lstat', 'readdir', 'stat']): { counts: Record<string, number>; restore: () => void } {
  const fsp = require('node:fs/promises') as Record<string, (...args: unknown[]) => unknown>;
  const counts: Record<string, number> = {};
  const originals = new Map<string, (...args: unknown[]) => unknown>();
  for (const name of names) {
    const original = fsp[name]!;
    originals.set(name, original);
    counts[name] = 0;
    fsp[name] = (...args: unknown[]) => {
      counts[name]! += 1;
      return original(...args);
    };
  }
  syncBuiltinESMExports();
  return {
    counts,
    restore: () => {
      for (const [name, original] of originals) fsp[name] = original;
      syncBuiltinESMExports();
    },
  };
}
