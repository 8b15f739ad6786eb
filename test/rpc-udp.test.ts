import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { IPPROTO_TCP, PMAP_PROG, PMAPPROC_GETPORT, PortmapRegistry, XdrReader, XdrWriter, encodeCall, portmapProgram } from '../src/rpc/index.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { GATED_PROG, closedWithin, gatedProgram, replyStatus, withRpcServer } from './rpc-helpers.js';

/** A UDP client that sends datagrams to `port` and collects the replies by xid. */
async function udpClient(port: number): Promise<{
  send: (msg: Buffer) => void;
  reply: (xid: number, ms: number) => Promise<XdrReader | undefined>;
  replies: () => number;
  close: () => void;
}> {
  const sock = createSocket('udp4');
  const got = new Map<number, Buffer>();
  sock.on('message', (m) => got.set(m.readUInt32BE(0), m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return {
    send: (msg) => sock.send(msg, port, '127.0.0.1'),
    reply: async (xid, ms) => {
      for (let waited = 0; !got.has(xid) && waited < ms; waited += 10) await sleep(10);
      const m = got.get(xid);
      return m && new XdrReader(m, 4);
    },
    replies: () => got.size,
    close: () => sock.close(),
  };
}

const getPortArgs = new XdrWriter().u32(100003).u32(3).u32(IPPROTO_TCP).u32(0).toBuffer();

test('portmapper: a peer outside the allow list is refused at accept over TCP and ignored over UDP', async () => {
  for (const allowLoopback of [true, false]) {
    const registry = new PortmapRegistry();
    registry.set({ prog: 100003, vers: 3, prot: IPPROTO_TCP, port: 2049 }, { owned: true });
    await withRpcServer(
      { accept: (address) => allowLoopback || !/^(::ffff:)?127\./.test(address) },
      async (port, server) => {
        await server.listenUdp(port, '127.0.0.1');
        const tcp = await RpcTestClient.connect(port);
        const udp = await udpClient(port);
        try {
          udp.send(encodeCall(7, PMAP_PROG, 2, PMAPPROC_GETPORT, getPortArgs));
          const udpReply = await udp.reply(7, allowLoopback ? 2000 : 500);
          if (allowLoopback) {
            assert.equal(replyStatus(await tcp.call(PMAP_PROG, 2, PMAPPROC_GETPORT, getPortArgs)), 0);
            assert.ok(udpReply, 'allowed: answered over UDP');
            assert.equal(replyStatus(udpReply), 0);
            assert.equal(udpReply.u32(), 2049);
          } else {
            assert.equal(await closedWithin(tcp, 2000), true, 'refused: the TCP connection is closed at once');
            assert.equal(udpReply, undefined, 'refused: no UDP reply');
          }
        } finally {
          tcp.close();
          udp.close();
        }
      },
      portmapProgram(registry),
    );
  }
});

test('rpc server over UDP: a datagram larger than maxRecordBytes is ignored', async () => {
  await withRpcServer({ maxRecordBytes: 1024 }, async (port, server) => {
    await server.listenUdp(port, '127.0.0.1');
    const udp = await udpClient(port);
    try {
      udp.send(encodeCall(1, GATED_PROG, 1, 0, Buffer.alloc(2000)));
      udp.send(encodeCall(2, GATED_PROG, 1, 0, Buffer.alloc(0)));
      assert.ok(await udp.reply(2, 2000), 'a call within the limit is answered');
      assert.equal(await udp.reply(1, 300), undefined, 'the oversized one is not (not even GARBAGE_ARGS)');
    } finally {
      udp.close();
    }
  });
});

test('rpc server over UDP: a flood runs at most maxUdpInFlight calls at once and drops the rest', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { maxUdpInFlight: 8 },
    async (port, server) => {
      await server.listenUdp(port, '127.0.0.1');
      const udp = await udpClient(port);
      try {
        for (let xid = 1; xid <= 500; xid++) udp.send(encodeCall(xid, GATED_PROG, 1, 1, Buffer.alloc(0)));
        for (let waited = 0; gated.running() < 8 && waited < 5000; waited += 10) await sleep(10);
        await sleep(300); // the rest of the flood arrives and must be dropped, not queued
        assert.equal(gated.peak(), 8, `calls running at once: ${gated.peak()}`);
        gated.open();
        await sleep(300);
        assert.equal(gated.started(), 8, 'dropped datagrams are not run later');
        assert.equal(udp.replies(), 8);
        udp.send(encodeCall(1000, GATED_PROG, 1, 1, Buffer.alloc(0)));
        assert.ok(await udp.reply(1000, 2000), 'once the flood is over, calls are served again');
      } finally {
        gated.open();
        udp.close();
      }
    },
    gated.program,
  );
});

test('rpc server over UDP: a call that completes after close() is dropped quietly', async () => {
  const gated = gatedProgram();
  const failures: unknown[] = [];
  const onRejection = (err: unknown): void => void failures.push(err);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onRejection);
  try {
    await withRpcServer(
      {},
      async (port, server) => {
        await server.listenUdp(port, '127.0.0.1');
        const udp = await udpClient(port);
        try {
          udp.send(encodeCall(1, GATED_PROG, 1, 1, Buffer.alloc(0)));
          for (let waited = 0; gated.running() < 1 && waited < 5000; waited += 10) await sleep(10);
          await server.close();
          gated.open();
          await sleep(100);
        } finally {
          udp.close();
        }
      },
      gated.program,
    );
  } finally {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onRejection);
  }
  assert.deepEqual(failures.map(String), []);
});
