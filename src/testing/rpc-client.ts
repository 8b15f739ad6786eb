import { connect, type Socket } from 'node:net';
import { RecordReader, recordHeader } from '../rpc/record-marking.js';
import { encodeCall, type AuthSys } from '../rpc/rpc-message.js';
import { XdrReader } from '../rpc/xdr.js';

/** Test support: a raw ONC RPC client over TCP that can also send broken frames. */
export class RpcTestClient {
  private readonly reader = new RecordReader(64 * 1024 * 1024);
  private readonly waiting = new Map<number, (r: XdrReader) => void>();
  private nextXid = 1;
  closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      for (const rec of this.reader.feed(d)) {
        const r = new XdrReader(rec);
        const xid = r.u32();
        this.waiting.get(xid)?.(r);
        this.waiting.delete(xid);
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((r) => socket.on('close', () => r()));
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RpcTestClient> {
    const s = connect(port, host);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return new RpcTestClient(s);
  }

  /** Sends a call; resolves with a reader positioned after the xid of the reply. */
  call(
    prog: number,
    vers: number,
    proc: number,
    args: Buffer = Buffer.alloc(0),
    opts: { cred?: AuthSys; xid?: number; rpcvers?: number } = {},
  ): Promise<XdrReader> {
    const xid = opts.xid ?? this.nextXid++;
    const msg = encodeCall(xid, prog, vers, proc, args, opts.cred);
    if (opts.rpcvers !== undefined) msg.writeUInt32BE(opts.rpcvers, 8);
    const p = new Promise<XdrReader>((r) => this.waiting.set(xid, r));
    this.socket.write(Buffer.concat([recordHeader(msg.length), msg]));
    return p;
  }

  /** Sends raw bytes (broken frames, split fragments). */
  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  expect(xid: number): Promise<XdrReader> {
    return new Promise<XdrReader>((r) => this.waiting.set(xid, r));
  }

  close(): void {
    this.socket.destroy();
  }
}
