import { connect } from 'node:net';
import { RecordReader, recordHeader } from './record-marking.js';
import { encodeCall } from './rpc-message.js';
import { XdrReader, XdrWriter } from './xdr.js';
import { PMAP_PROG, PMAP_VERS, PMAPPROC_SET, PMAPPROC_UNSET, type Mapping } from './portmap.js';

/**
 * Registers with (or unregisters from) a portmapper that already holds port
 * 111 — a system rpcbind. Resolves true when it accepted.
 */
export function pmapRegister(m: Mapping, opts: { unset?: boolean; port?: number; host?: string } = {}): Promise<boolean> {
  const args = new XdrWriter().u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port).toBuffer();
  const call = encodeCall(0x1f00 + Math.floor(Math.random() * 1000), PMAP_PROG, PMAP_VERS, opts.unset ? PMAPPROC_UNSET : PMAPPROC_SET, args);
  return new Promise((resolve, reject) => {
    const s = connect(opts.port ?? 111, opts.host ?? '127.0.0.1');
    const reader = new RecordReader(1 << 16);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('portmapper did not answer'));
    }, 5000);
    s.on('connect', () => s.write(Buffer.concat([recordHeader(call.length), call])));
    s.on('data', (d: Buffer) => {
      for (const rec of reader.feed(d)) {
        clearTimeout(timer);
        s.destroy();
        const r = new XdrReader(rec);
        r.u32(); // xid
        const ok = r.u32() === 1 && r.u32() === 0 && (r.u32(), r.opaque(400), r.u32() === 0) && r.bool();
        resolve(ok);
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
