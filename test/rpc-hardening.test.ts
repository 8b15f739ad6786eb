import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenTcp } from '../src/core/listen.js';
import { createLogger } from '../src/core/log.js';
import { encodeCall, recordHeader, type Procedure } from '../src/rpc/index.js';
import { XdrWriter } from '../src/rpc/xdr.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { GATED_PROG, closedWithin, gatedProgram, replyStatus, withRpcServer } from './rpc-helpers.js';
import { serverWrites, waitUntil } from './socket-writes.js';

const logger = createLogger('error');

test('rpc server: 1000 calls in one write never run more than maxInFlight at once, and all are answered', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { maxInFlight: 8 },
    async (port) => {
      const c = await RpcTestClient.connect(port);
      try {
        const calls = 1000;
        const replies = Array.from({ length: calls }, (_, i) => c.expect(i + 1));
        c.raw(
          Buffer.concat(
            Array.from({ length: calls }, (_, i) => encodeCall(i + 1, GATED_PROG, 1, 1, Buffer.alloc(0))).flatMap((m) => [recordHeader(m.length), m]),
          ),
        );
        for (let waited = 0; gated.running() < 8 && waited < 5000; waited += 10) await sleep(10);
        await sleep(200); // time for any record beyond the limit to be (wrongly) dispatched
        assert.equal(gated.peak(), 8, `calls running at once: ${gated.peak()}`);
        gated.open();
        const all = await Promise.all(replies);
        assert.equal(all.filter((r) => replyStatus(r) === 0).length, calls);
        assert.equal(gated.started(), calls);
        assert.ok(gated.peak() <= 8, `calls running at once: ${gated.peak()}`);
      } finally {
        gated.open();
        c.close();
      }
    },
    gated.program,
  );
});

test('rpc server: connection number maxConnections + 1 is closed at once while the others stay served', async () => {
  await withRpcServer({ maxConnections: 3 }, async (port) => {
    const kept = await Promise.all([1, 2, 3].map(() => RpcTestClient.connect(port)));
    try {
      for (const c of kept) assert.equal(replyStatus(await c.call(GATED_PROG, 1, 0)), 0);
      const extra = await RpcTestClient.connect(port);
      assert.equal(await closedWithin(extra, 2000), true, 'the connection over the cap is closed');
      for (const c of kept) assert.equal(replyStatus(await c.call(GATED_PROG, 1, 0)), 0, 'the others are still served');
      // A closed connection frees its place.
      kept.pop()!.close();
      await sleep(100);
      const again = await RpcTestClient.connect(port);
      assert.equal(replyStatus(await again.call(GATED_PROG, 1, 0)), 0);
      again.close();
    } finally {
      for (const c of kept) c.close();
    }
  });
});

test('rpc server: an idle connection is closed after idleTimeoutMs; one with a call in progress is not', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { idleTimeoutMs: 150 },
    async (port) => {
      const idle = await RpcTestClient.connect(port);
      const busy = await RpcTestClient.connect(port);
      try {
        const reply = busy.call(GATED_PROG, 1, 1);
        assert.equal(await closedWithin(idle, 2000), true, 'the idle connection is closed');
        assert.equal(await closedWithin(busy, 400), false, 'a connection waiting for its reply stays open');
        gated.open();
        assert.equal(replyStatus(await reply), 0);
        assert.equal(await closedWithin(busy, 2000), true, 'once answered and idle, it is closed too');
      } finally {
        gated.open();
        idle.close();
        busy.close();
      }
    },
    gated.program,
  );
});

/** Linux: whether the server's end of an established connection on `port` has its keepalive timer running (/proc/net/tcp "tr" 2). */
async function keepaliveTimerRunning(port: number): Promise<boolean> {
  const table = await readFile('/proc/net/tcp', 'utf8');
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '01') return f[5]!.startsWith('02:');
  }
  assert.fail(`no established connection on port ${port} in /proc/net/tcp`);
}

test('rpc server: accepted connections have TCP keepalive on', async () => {
  await withRpcServer({}, async (port) => {
    const c = await RpcTestClient.connect(port);
    try {
      assert.equal(replyStatus(await c.call(GATED_PROG, 1, 0)), 0);
      assert.equal(await keepaliveTimerRunning(port), true, 'keepalive timer on the server side');
    } finally {
      c.close();
    }
  });
});

test('listenTcp: an error on a listening server is reported, not thrown, and the server keeps accepting', async () => {
  const server = createServer((s) => s.end('hi'));
  const seen: string[] = [];
  const port = await listenTcp(server, 0, '127.0.0.1', { onError: (err) => seen.push(err.message) });
  try {
    assert.doesNotThrow(() => server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })));
    assert.deepEqual(seen, ['accept EMFILE']);
    const got = await new Promise<string>((resolve, reject) => {
      const c = connect(port, '127.0.0.1');
      let text = '';
      c.on('data', (d: Buffer) => (text += d.toString()));
      c.on('end', () => resolve(text));
      c.on('error', reject);
    });
    assert.equal(got, 'hi');
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('rpc server: an accept error on its listener is logged and the server keeps serving', async () => {
  const logged: string[] = [];
  const capture = { ...logger, error: (msg: string, fields?: Record<string, unknown>) => logged.push(`${msg} ${JSON.stringify(fields)}`) };
  await withRpcServer({ logger: capture }, async (port, server) => {
    // The net.Server is private; an EMFILE from accept reaches it as an 'error' event.
    const listener = (server as unknown as { server: Server }).server;
    assert.doesNotThrow(() => listener.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })));
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /EMFILE/);
    const c = await RpcTestClient.connect(port);
    try {
      assert.equal(replyStatus(await c.call(GATED_PROG, 1, 0)), 0);
    } finally {
      c.close();
    }
  });
});

test('rpc server: request bytes in flight across connections stay within maxRequestBytesInFlight', async () => {
  const gated = gatedProgram();
  // Calls of about 400 bytes: procedure 1 takes no arguments, so the bulk is an AUTH_SYS credential.
  await withRpcServer(
    { maxRequestBytesInFlight: 8 * 1024 },
    async (port) => {
      const clients = await Promise.all([1, 2, 3].map(() => RpcTestClient.connect(port)));
      try {
        const cred = { stamp: 0, machineName: 'x'.repeat(255), uid: 0, gid: 0, gids: Array.from({ length: 16 }, (_, i) => i) };
        const replies = clients.flatMap((c) => Array.from({ length: 20 }, () => c.call(GATED_PROG, 1, 1, Buffer.alloc(0), { cred })));
        const recordBytes = encodeCall(1, GATED_PROG, 1, 1, Buffer.alloc(0), cred).length;
        for (let waited = 0; gated.running() < 3 && waited < 5000; waited += 10) await sleep(10);
        await sleep(300);
        // Within the budget, plus one call per connection that had none in progress (so no connection starves).
        const allowed = Math.ceil((8 * 1024) / recordBytes) + clients.length;
        assert.ok(gated.peak() <= allowed, `calls of ${recordBytes} bytes running at once: ${gated.peak()} (at most ${allowed})`);
        assert.ok(gated.peak() >= clients.length, 'every connection got a call in');
        gated.open();
        assert.equal((await Promise.all(replies)).filter((r) => replyStatus(r) === 0).length, 60);
      } finally {
        gated.open();
        for (const c of clients) c.close();
      }
    },
    gated.program,
  );
});

test('rpc server: a connection sending empty fragments forever is closed', async () => {
  await withRpcServer({}, async (port) => {
    const flood = await RpcTestClient.connect(port);
    const good = await RpcTestClient.connect(port);
    try {
      for (let i = 0; i < 64 && !flood.socket.destroyed; i++) flood.raw(Buffer.alloc(64 * 1024));
      assert.equal(await closedWithin(flood, 2000), true);
      assert.equal(replyStatus(await good.call(GATED_PROG, 1, 0)), 0, 'the other connection is unaffected');
    } finally {
      flood.close();
      good.close();
    }
  });
});

test('rpc server: bytes a reply was lent go back once the kernel has the reply, never before, also when the call fails or the client goes away', async () => {
  const MiB = 1 << 20;
  const LEND_PROG = 0x20000ffd;
  let lent = 0;
  let releases = 0;
  const lend = (out: XdrWriter, fill: number): void => {
    const data = Buffer.alloc(MiB, fill);
    lent += 1;
    out.onSent(() => {
      lent -= 1;
      releases += 1;
      // Given back, the memory may hold other bytes at once: a reply still being sent would carry these.
      data.fill(0xee);
    });
    out.opaque(data);
  };
  const procs = new Map<number, Procedure>([
    [
      1,
      async (a, out) => {
        const fill = a.u32();
        a.end();
        lend(out, fill);
      },
    ],
    [
      2,
      async (a, out) => {
        a.end();
        lend(out, 1);
        throw new Error('failed after lending');
      },
    ],
    [
      3,
      async (a, out) => {
        a.end();
        // The reply is ready only after its client has gone.
        await sleep(300);
        lend(out, 3);
      },
    ],
  ]);
  const args = (n: number): Buffer => new XdrWriter().u32(n).toBuffer();
  await withRpcServer(
    {},
    async (port) => {
      const c = await RpcTestClient.connect(port);
      try {
        const replies = Array.from({ length: 24 }, (_, i) => c.call(LEND_PROG, 1, 1, args(i + 1)));
        for (const [i, p] of replies.entries()) {
          const r = await p;
          assert.equal(replyStatus(r), 0);
          assert.ok(r.opaque(MiB).equals(Buffer.alloc(MiB, i + 1)), `reply ${i} carries the bytes lent, not what they became after`);
        }
        const failed = await c.call(LEND_PROG, 1, 2);
        assert.equal(replyStatus(failed), 5, 'SYSTEM_ERR');
        for (let i = 0; i < 50 && lent > 0; i++) await sleep(20);
        assert.equal(releases, 25);
        assert.equal(lent, 0);
      } finally {
        c.close();
      }
      // A client that asks and never reads its replies, then goes: every loan comes back.
      const s = connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(Buffer.concat(Array.from({ length: 32 }, (_, i) => encodeCall(i + 1, LEND_PROG, 1, 1, args(7))).flatMap((m) => [recordHeader(m.length), m])));
      for (let i = 0; i < 100 && lent < 2; i++) await sleep(20);
      assert.ok(lent > 0, 'replies wait in the socket, their bytes lent');
      s.destroy();
      for (let i = 0; i < 100 && lent > 0; i++) await sleep(20);
      assert.equal(lent, 0);
      // A client gone before its replies were made: they are never sent, and what they were lent comes back.
      const before = releases;
      const gone = connect(port, '127.0.0.1');
      await new Promise((r) => gone.once('connect', r));
      gone.write(
        Buffer.concat(Array.from({ length: 4 }, (_, i) => encodeCall(i + 1, LEND_PROG, 1, 3, Buffer.alloc(0))).flatMap((m) => [recordHeader(m.length), m])),
      );
      await sleep(50);
      gone.destroy();
      for (let i = 0; i < 100 && releases - before < 4; i++) await sleep(20);
      assert.equal(releases - before, 4);
      assert.equal(lent, 0);
    },
    { prog: LEND_PROG, name: 'lend', versions: new Map([[1, procs]]) },
  );
});

test('rpc server: the replies of calls that finish together leave in one writev (not one each)', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { maxInFlight: 16 },
    async (port) => {
      const c = await RpcTestClient.connect(port);
      try {
        const replies = Array.from({ length: 16 }, () => c.call(GATED_PROG, 1, 1));
        const writes = await serverWrites(
          (s) => s.remotePort === c.socket.localPort,
          async () => {
            await waitUntil('16 calls at the gate', () => gated.running() === 16);
            gated.open();
            for (const r of await Promise.all(replies)) assert.equal(replyStatus(r), 0);
          },
        );
        assert.equal(writes, 1, `16 replies in ${writes} writes`);
      } finally {
        gated.open();
        c.close();
      }
    },
    gated.program,
  );
});
