import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLogger } from '../src/core/log.js';
import {
  IPPROTO_TCP,
  PMAP_PROG,
  PortmapRegistry,
  RecordReader,
  RecordTooLargeError,
  RpcServer,
  XdrError,
  XdrReader,
  XdrWriter,
  encodeCall,
  portmapProgram,
  recordHeader,
  type Procedure,
} from '../src/rpc/index.js';
import { prng } from '../src/testing/prng.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { withPort111 } from './helpers.js';

const run = promisify(execFile);
const logger = createLogger('error');

test('xdr: round trip, padding, and lengths checked before use', () => {
  const w = new XdrWriter()
    .u32(7)
    .i32(-2)
    .u64(2n ** 40n + 3n)
    .bool(true)
    .string('héllo')
    .opaque(Buffer.alloc(2000, 1))
    .fixedOpaque(Buffer.from([1, 2, 3]));
  const b = w.toBuffer();
  assert.equal(b.length % 4, 0);
  const r = new XdrReader(b);
  assert.equal(r.u32(), 7);
  assert.equal(r.i32(), -2);
  assert.equal(r.u64(), 2n ** 40n + 3n);
  assert.equal(r.bool(), true);
  assert.equal(r.string(255), 'héllo');
  assert.equal(r.opaque(4096).length, 2000);
  assert.deepEqual([...r.fixedOpaque(3)], [1, 2, 3]);
  r.end();
  assert.throws(() => new XdrReader(new XdrWriter().string('toolong').toBuffer()).string(3), XdrError);
  // A huge declared length is refused before any allocation.
  assert.throws(() => new XdrReader(new XdrWriter().u32(0xfffffff0).toBuffer()).opaque(2 ** 32), XdrError);
  assert.throws(() => new XdrReader(Buffer.alloc(2)).u32(), XdrError);
  assert.throws(() => new XdrReader(new XdrWriter().u32(2).toBuffer()).bool(), XdrError);
  assert.throws(() => new XdrReader(Buffer.alloc(8)).end(), XdrError);
});

test('record marking: any split of any fragmenting reassembles the same records', () => {
  const rand = prng(99);
  for (let trial = 0; trial < 200; trial++) {
    const records = Array.from({ length: 1 + Math.floor(rand() * 5) }, () =>
      Buffer.from(Array.from({ length: Math.floor(rand() * 3000) }, () => Math.floor(rand() * 256))),
    );
    const wire: Buffer[] = [];
    for (const rec of records) {
      // Cut each record into 1-4 fragments.
      let at = 0;
      const cuts = Math.floor(rand() * 4);
      for (let f = 0; f <= cuts; f++) {
        const end = f === cuts ? rec.length : Math.min(rec.length, at + Math.floor(rand() * (rec.length - at + 1)));
        const h = Buffer.alloc(4);
        h.writeUInt32BE(((f === cuts ? 0x80000000 : 0) | (end - at)) >>> 0);
        wire.push(h, rec.subarray(at, end));
        at = end;
      }
    }
    const all = Buffer.concat(wire);
    const reader = new RecordReader(1 << 20);
    const got: Buffer[] = [];
    for (let at = 0; at < all.length;) {
      const n = 1 + Math.floor(rand() * 700);
      got.push(...reader.feed(all.subarray(at, at + n)));
      at += n;
    }
    assert.deepEqual(
      got.map((g) => g.toString('hex')),
      records.map((r) => r.toString('hex')),
      `trial ${trial}`,
    );
    assert.equal(reader.buffered, 0);
  }
  const capped = new RecordReader(100);
  assert.throws(() => capped.feed(Buffer.concat([Buffer.from([0, 0, 0, 80]), Buffer.alloc(80), Buffer.from([0x80, 0, 0, 40])])), RecordTooLargeError);
});

const TEST_PROG = 0x20000fff;
function testProgram(): { prog: number; name: string; versions: Map<number, Map<number, Procedure>> } {
  return {
    prog: TEST_PROG,
    name: 'test',
    versions: new Map([
      [
        2,
        new Map<number, Procedure>([
          [0, (a) => a.end()],
          [
            1,
            (a, out, ctx) => {
              const s = a.string(64, 'text');
              a.end();
              out.string(s.toUpperCase()).u32(ctx.cred.flavor === 'sys' ? ctx.cred.uid : 0xffffffff);
            },
          ],
          [
            2,
            async (a, out) => {
              const ms = a.u32();
              await new Promise((r) => setTimeout(r, ms));
              out.u32(ms);
            },
          ],
          [
            3,
            () => {
              throw new Error('boom');
            },
          ],
        ]),
      ],
      [3, new Map<number, Procedure>([[0, (a) => a.end()]])],
    ]),
  };
}

async function withServer(
  fn: (port: number, server: RpcServer) => Promise<void>,
  opts: Partial<ConstructorParameters<typeof RpcServer>[0]> = {},
): Promise<void> {
  const server = new RpcServer({ logger, maxRecordBytes: 64 * 1024, maxInFlight: 8, ...opts });
  server.register(testProgram());
  const port = await server.listen(0, '127.0.0.1');
  try {
    await fn(port, server);
  } finally {
    await server.close();
  }
}

function acceptStat(r: XdrReader): number {
  assert.equal(r.u32(), 1, 'REPLY');
  assert.equal(r.u32(), 0, 'MSG_ACCEPTED');
  r.u32();
  r.opaque(400);
  return r.u32();
}

test('rpc server: every RFC 5531 error reply, auth, and results', async () => {
  await withServer(async (port) => {
    const c = await RpcTestClient.connect(port);
    try {
      const arg = new XdrWriter().string('hello').toBuffer();
      let r = await c.call(TEST_PROG, 2, 1, arg, { cred: { stamp: 1, machineName: 'esx01', uid: 0, gid: 0, gids: [0, 10] } });
      assert.equal(acceptStat(r), 0);
      assert.equal(r.string(64), 'HELLO');
      assert.equal(r.u32(), 0, 'AUTH_SYS uid seen');
      r = await c.call(TEST_PROG, 2, 1, arg);
      assert.equal(acceptStat(r), 0);
      assert.equal(r.string(64), 'HELLO');
      assert.equal(r.u32(), 0xffffffff, 'AUTH_NONE');
      assert.equal(acceptStat(await c.call(0x30000000, 1, 0)), 1, 'PROG_UNAVAIL');
      r = await c.call(TEST_PROG, 9, 0);
      assert.equal(acceptStat(r), 2, 'PROG_MISMATCH');
      assert.deepEqual([r.u32(), r.u32()], [2, 3]);
      assert.equal(acceptStat(await c.call(TEST_PROG, 2, 77)), 3, 'PROC_UNAVAIL');
      assert.equal(acceptStat(await c.call(TEST_PROG, 2, 1, Buffer.from([0, 0, 1]))), 4, 'GARBAGE_ARGS: truncated');
      assert.equal(acceptStat(await c.call(TEST_PROG, 2, 0, Buffer.alloc(4))), 4, 'GARBAGE_ARGS: trailing bytes');
      assert.equal(acceptStat(await c.call(TEST_PROG, 2, 3)), 5, 'SYSTEM_ERR');
      r = await c.call(TEST_PROG, 2, 0, Buffer.alloc(0), { rpcvers: 3 });
      assert.deepEqual([r.u32(), r.u32(), r.u32(), r.u32(), r.u32()], [1, 1, 0, 2, 2], 'MSG_DENIED RPC_MISMATCH 2..2');
      // A request split into several fragments, bytes dribbled one at a time.
      const msg = encodeCall(500, TEST_PROG, 2, 1, arg);
      const half = Math.floor(msg.length / 2);
      const frames = Buffer.concat([Buffer.from([0, 0, 0, half]), msg.subarray(0, half), recordHeader(msg.length - half), msg.subarray(half)]);
      const p = c.expect(500);
      for (const b of frames) c.raw(Buffer.from([b]));
      r = await p;
      assert.equal(acceptStat(r), 0);
      assert.equal(r.string(64), 'HELLO');
    } finally {
      c.close();
    }
  });
});

test('rpc server: calls complete out of order; a flood is answered with bounded reading', async () => {
  await withServer(async (port) => {
    const c = await RpcTestClient.connect(port);
    try {
      const order: number[] = [];
      const slow = c.call(TEST_PROG, 2, 2, new XdrWriter().u32(150).toBuffer()).then(() => order.push(150));
      const fast = c.call(TEST_PROG, 2, 2, new XdrWriter().u32(1).toBuffer()).then(() => order.push(1));
      await Promise.all([slow, fast]);
      assert.deepEqual(order, [1, 150], 'the fast reply is not held behind the slow one');
      // 2000 calls at once against maxInFlight 8: all answered, none lost.
      const all = await Promise.all(Array.from({ length: 2000 }, () => c.call(TEST_PROG, 2, 0)));
      assert.equal(all.filter((r) => acceptStat(r) === 0).length, 2000);
    } finally {
      c.close();
    }
  });
});

test('rpc server: a broken or oversized frame closes that connection only; refused peers and credentials', async () => {
  await withServer(
    async (port) => {
      const good = await RpcTestClient.connect(port);
      const bad = await RpcTestClient.connect(port);
      bad.raw(Buffer.from([0x80, 0x10, 0, 0])); // a 1 MiB record against a 64 KiB cap
      await bad.closed;
      const junk = await RpcTestClient.connect(port);
      junk.raw(Buffer.concat([recordHeader(8), Buffer.from([0, 0, 0, 9, 0, 0, 0, 1])])); // a REPLY sent to a server
      await junk.closed;
      assert.equal(acceptStat(await good.call(TEST_PROG, 2, 0)), 0, 'the other connection keeps working');
      const r = await good.call(TEST_PROG, 2, 0, Buffer.alloc(0), { cred: { stamp: 0, machineName: 'evil', uid: 666, gid: 0, gids: [] } });
      assert.deepEqual([r.u32(), r.u32(), r.u32(), r.u32()], [1, 1, 1, 1], 'MSG_DENIED AUTH_ERROR AUTH_BADCRED');
      good.close();
    },
    { authorize: (cred) => cred.flavor !== 'sys' || cred.uid !== 666 },
  );
  await withServer(
    async (port) => {
      const c = await RpcTestClient.connect(port);
      await c.closed;
    },
    { accept: () => false },
  );
});

test('portmapper: GETPORT, SET/UNSET, DUMP, and real rpcinfo against it on port 111', () =>
  withPort111(async () => {
    const registry = new PortmapRegistry();
    const server = new RpcServer({ logger });
    server.register(portmapProgram(registry));
    registry.set({ prog: PMAP_PROG, vers: 2, prot: IPPROTO_TCP, port: 111 });
    await server.listen(111, '127.0.0.1');
    await server.listenUdp(111, '127.0.0.1');
    try {
      const c = await RpcTestClient.connect(111);
      const mapping = (prog: number, vers: number, port: number): Buffer => new XdrWriter().u32(prog).u32(vers).u32(IPPROTO_TCP).u32(port).toBuffer();
      let r = await c.call(PMAP_PROG, 2, 1, mapping(100003, 3, 2049));
      assert.equal(acceptStat(r), 0);
      assert.equal(r.bool(), true, 'SET from loopback');
      r = await c.call(PMAP_PROG, 2, 1, mapping(100005, 3, 1058));
      assert.equal(acceptStat(r), 0);
      r = await c.call(PMAP_PROG, 2, 3, mapping(100003, 3, 0));
      assert.equal(acceptStat(r), 0);
      assert.equal(r.u32(), 2049, 'GETPORT');
      r = await c.call(PMAP_PROG, 2, 3, mapping(100003, 4, 0));
      acceptStat(r);
      assert.equal(r.u32(), 0, 'not registered: port 0');
      assert.equal(acceptStat(await c.call(PMAP_PROG, 2, 5)), 3, 'CALLIT is not offered');
      r = await c.call(PMAP_PROG, 4, 0);
      assert.equal(acceptStat(r), 2, 'rpcbind v3/v4: PROG_MISMATCH 2..2');
      assert.deepEqual([r.u32(), r.u32()], [2, 2]);

      // Real clients from Debian's rpcbind package.
      const dump = (await run('rpcinfo', ['-p', '127.0.0.1'])).stdout;
      assert.match(dump, /100003\s+3\s+tcp\s+2049/);
      assert.match(dump, /100005\s+3\s+tcp\s+1058/);
      assert.match(dump, /100000\s+2\s+tcp\s+111\s+portmapper/);
      const ping = (await run('rpcinfo', ['-T', 'tcp', '-n', '111', '127.0.0.1', '100000', '2'])).stdout;
      assert.match(ping, /program 100000 version 2 ready and waiting/);

      r = await c.call(PMAP_PROG, 2, 2, mapping(100005, 3, 0));
      acceptStat(r);
      assert.equal(r.bool(), true, 'UNSET');
      assert.doesNotMatch((await run('rpcinfo', ['-p', '127.0.0.1'])).stdout, /100005/);
      c.close();
    } finally {
      await server.close();
    }
  }));
