import { XdrWriter, type XdrReader } from '../rpc/xdr.js';
import { RpcTestClient } from './rpc-client.js';

/**
 * Test and benchmark support: one file of a served datastore, read and
 * written through NFSv3 the way a hypervisor does (MNT the export, LOOKUP
 * down to the file, READ, WRITE with a chosen stability). A call the server
 * never answers because its connection closed (the server was killed)
 * rejects instead of hanging, so a caller can count it as not acknowledged.
 */
const NFS_PROGRAM = 100003;
const MOUNT_PROGRAM = 100005;
const NFS3_LOOKUP = 3;
const NFS3_READ = 6;
const NFS3_WRITE = 7;
const MOUNT3_MNT = 1;
const FATTR3_BYTES = 84;
const WCC_ATTR_BYTES = 24;

export const STABLE = { UNSTABLE: 0, DATA_SYNC: 1, FILE_SYNC: 2 } as const;

export class NfsStatusError extends Error {
  constructor(
    readonly procedure: string,
    readonly status: number,
  ) {
    super(`${procedure}: NFS status ${status}`);
  }
}

/** Skips the RPC reply header (after the xid); returns the procedure's status. */
function replyStatus(r: XdrReader, procedure: string): number {
  if (r.u32() !== 1) throw new Error(`${procedure}: not an RPC reply`);
  if (r.u32() !== 0) throw new Error(`${procedure}: RPC call denied`);
  r.u32(); // verifier flavor
  r.opaque(400); // verifier body
  const accept = r.u32();
  if (accept !== 0) throw new Error(`${procedure}: RPC not accepted (accept_stat ${accept})`);
  return r.u32();
}

function skipPostOpAttr(r: XdrReader): void {
  if (r.bool()) r.fixedOpaque(FATTR3_BYTES);
}

export interface WriteReply {
  readonly count: number;
  /** How the server committed the data: STABLE.UNSTABLE, DATA_SYNC or FILE_SYNC. */
  readonly committed: number;
}

export class NfsDiskClient {
  private constructor(
    private readonly rpc: RpcTestClient,
    readonly handle: Buffer,
  ) {}

  /** MNT `exportPath` on `mountPort`, then LOOKUP each name of `path` on `nfsPort`. */
  static async open(nfsPort: number, mountPort: number, exportPath: string, path: readonly string[], host = '127.0.0.1'): Promise<NfsDiskClient> {
    const mount = await RpcTestClient.connect(mountPort, host);
    let handle: Buffer;
    try {
      const r = await answered(mount, mount.call(MOUNT_PROGRAM, 3, MOUNT3_MNT, new XdrWriter().string(exportPath).toBuffer()), 'MNT');
      const status = replyStatus(r, 'MNT');
      if (status !== 0) throw new NfsStatusError('MNT', status);
      handle = Buffer.from(r.opaque(64));
    } finally {
      mount.close();
    }
    const rpc = await RpcTestClient.connect(nfsPort, host);
    try {
      for (const name of path) {
        const r = await answered(rpc, rpc.call(NFS_PROGRAM, 3, NFS3_LOOKUP, new XdrWriter().opaque(handle).string(name).toBuffer()), 'LOOKUP');
        const status = replyStatus(r, `LOOKUP ${name}`);
        if (status !== 0) throw new NfsStatusError(`LOOKUP ${name}`, status);
        handle = Buffer.from(r.opaque(64));
      }
    } catch (err) {
      rpc.close();
      throw err;
    }
    return new NfsDiskClient(rpc, handle);
  }

  /** READ; returns what the server sent (shorter only at the end of the file). */
  async read(offset: number, length: number): Promise<Buffer> {
    const r = await answered(
      this.rpc,
      this.rpc.call(NFS_PROGRAM, 3, NFS3_READ, new XdrWriter().opaque(this.handle).u64(BigInt(offset)).u32(length).toBuffer()),
      'READ',
    );
    const status = replyStatus(r, 'READ');
    if (status !== 0) throw new NfsStatusError('READ', status);
    skipPostOpAttr(r);
    const count = r.u32();
    r.bool(); // eof
    const data = Buffer.from(r.opaque(length));
    if (data.length !== count) throw new Error(`READ: count ${count} but ${data.length} bytes of data`);
    return data;
  }

  /** WRITE with the given stability; resolves with what the server says it did. */
  async write(offset: number, data: Buffer, stable: number): Promise<WriteReply> {
    const args = new XdrWriter().opaque(this.handle).u64(BigInt(offset)).u32(data.length).u32(stable).opaque(data).toBuffer();
    const r = await answered(this.rpc, this.rpc.call(NFS_PROGRAM, 3, NFS3_WRITE, args), 'WRITE');
    const status = replyStatus(r, 'WRITE');
    if (status !== 0) throw new NfsStatusError('WRITE', status);
    if (r.bool()) r.fixedOpaque(WCC_ATTR_BYTES); // pre_op_attr
    skipPostOpAttr(r);
    const count = r.u32();
    const committed = r.u32();
    r.fixedOpaque(8); // write verifier
    return { count, committed };
  }

  close(): void {
    this.rpc.close();
  }
}

/** The reply to a call, or a rejection once the connection has closed without one. */
function answered(rpc: RpcTestClient, reply: Promise<XdrReader>, procedure: string): Promise<XdrReader> {
  return Promise.race([
    reply,
    rpc.closed.then(() => {
      throw new Error(`${procedure}: connection closed before the reply`);
    }),
  ]);
}
