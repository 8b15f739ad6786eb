/**
 * The NBD server against hostile and broken peers, in process over unix
 * sockets (no TCP port, no root, no QEMU): connection cap, handshake and
 * idle deadlines, clients that stop reading, accept errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { unpinned } from '../src/core/pinned-bytes.js';
import { NBD_SERVER_DEFAULTS } from '../src/nbd/nbd-server.js';
import * as W from '../src/nbd/wire.js';
import { memoryDevice, patternDevice, withServer } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';

const MiB = 1 << 20;

/** Resolves true if the peer's connection closes within `ms`. */
async function closesWithin(peer: NbdPeer, ms: number): Promise<boolean> {
  return Promise.race([peer.closed.then(() => true), sleep(ms).then(() => false)]);
}

test('nbd: connections over maxConnections (128 by default) are closed before the greeting, and logged', { timeout: 60_000 }, async () => {
  await withServer({ d: memoryDevice(MiB) }, {}, async (path, _server, logger) => {
    const peers: NbdPeer[] = [];
    try {
      for (let i = 0; i < 128; i++) {
        const p = await NbdPeer.connect(path);
        peers.push(p);
        await p.greet();
      }
      const over = await NbdPeer.connect(path);
      peers.push(over);
      assert.ok(await closesWithin(over, 5000), 'the 129th connection is closed');
      assert.equal(over.received, 0, 'and got no greeting');
      assert.ok(
        logger.lines.some((l) => /^warn .*connections/.test(l)),
        logger.lines.join('\n'),
      );
      // A slot comes back when a connection ends.
      peers[0]!.destroy();
      await peers[0]!.closed;
      for (let tries = 0; ; tries++) {
        const again = await NbdPeer.connect(path);
        peers.push(again);
        const greeted = await Promise.race([
          again.greet().then(
            () => true,
            () => false,
          ),
          again.closed.then(() => false),
        ]);
        if (greeted) break;
        assert.ok(tries < 50, 'a freed slot is reused');
        await sleep(20);
      }
    } finally {
      for (const p of peers) p.destroy();
    }
  });
});

test('nbd: a client that does not finish the handshake in handshakeTimeoutMs is dropped; one that does is kept', { timeout: 30_000 }, async () => {
  await withServer({ d: memoryDevice(MiB) }, { handshakeTimeoutMs: 300 }, async (path) => {
    const silent = await NbdPeer.connect(path);
    const slow = await NbdPeer.connect(path);
    const good = await NbdPeer.connect(path);
    try {
      await silent.greet(); // then says nothing
      await slow.greet();
      slow.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      await slow.readOptionReplies();
      slow.socket.write(Buffer.alloc(10)); // half an option header, never finished
      await good.open('d');
      assert.ok(await closesWithin(silent, 3000), 'silent client dropped');
      assert.ok(await closesWithin(slow, 3000), 'client stuck mid-option dropped');
      assert.ok(!(await closesWithin(good, 500)), 'a client in transmission is not subject to the handshake deadline');
      good.sendRequest({ type: W.NBD_CMD_READ, cookie: 7n, offset: 0, length: 512 });
      const r = await good.readSimpleReply(() => 512);
      assert.equal(r.error, 0);
    } finally {
      for (const p of [silent, slow, good]) p.destroy();
    }
  });
});

test('nbd: idleTimeoutMs (off by default) drops an idle connection, never one whose request is still running', { timeout: 30_000 }, async () => {
  let slowReads = 0;
  const dev = memoryDevice(MiB, { read: async () => void (slowReads++ > 0 ? await sleep(1200) : undefined) });
  await withServer({ d: dev }, { idleTimeoutMs: 400 }, async (path) => {
    const idle = await NbdPeer.connect(path);
    const busy = await NbdPeer.connect(path);
    try {
      await idle.open('d');
      await busy.open('d');
      idle.sendRequest({ type: W.NBD_CMD_READ, cookie: 1n, offset: 0, length: 512 });
      assert.equal((await idle.readSimpleReply(() => 512)).error, 0);
      busy.sendRequest({ type: W.NBD_CMD_READ, cookie: 2n, offset: 0, length: 512 }); // takes 1.2 s
      assert.ok(await closesWithin(idle, 3000), 'idle connection dropped');
      const r = await busy.readSimpleReply(() => 512);
      assert.equal(r.error, 0, 'a request running longer than the idle timeout is answered');
      assert.ok(await closesWithin(busy, 3000), 'and the connection is dropped once idle');
    } finally {
      idle.destroy();
      busy.destroy();
    }
  });
  // Off by default: an idle connection stays.
  await withServer({ d: memoryDevice(MiB) }, {}, async (path) => {
    const p = await NbdPeer.connect(path);
    try {
      await p.open('d');
      assert.ok(!(await closesWithin(p, 1000)));
    } finally {
      p.destroy();
    }
  });
});

test(
  'nbd: a client that leaves its replies unread for replyStallTimeoutMs is dropped and its share of the server budget freed',
  { timeout: 60_000 },
  async () => {
    const len = W.MAX_PAYLOAD;
    const dev = patternDevice(16 * len, len);
    // The whole server may hold one 32 MiB request's bytes: the hoarder takes it all.
    await withServer({ d: dev }, { replyStallTimeoutMs: 500, maxInFlightBytesTotal: len }, async (path, _server, logger) => {
      const hoarder = await NbdPeer.connect(path);
      const other = await NbdPeer.connect(path);
      try {
        await hoarder.open('d');
        await other.open('d');
        hoarder.socket.pause();
        for (let i = 0; i < 4; i++) hoarder.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(i), offset: i * len, length: len });
        // Bytes trickling in must not count as the client being alive while its replies wait.
        let cookie = 100n;
        const trickle = setInterval(() => hoarder.sendRequest({ type: W.NBD_CMD_FLUSH, cookie: cookie++, offset: 0, length: 0 }), 50);
        hoarder.closed.finally(() => clearInterval(trickle)).catch(() => undefined);
        await sleep(100);
        other.sendRequest({ type: W.NBD_CMD_READ, cookie: 99n, offset: 5 * len, length: len });
        const r = await Promise.race([other.readSimpleReply(() => len), sleep(10_000).then(() => undefined)]);
        assert.ok(r, 'the other client is served once the hoarder is dropped');
        assert.equal(r.error, 0);
        assert.equal(r.data[0], 5);
        hoarder.socket.resume(); // a paused socket does not see its end
        assert.ok(await closesWithin(hoarder, 3000), 'the hoarder was dropped');
        assert.ok(
          logger.lines.some((l) => /^warn .*read its replies/.test(l)),
          logger.lines.join('\n'),
        );
      } finally {
        hoarder.destroy();
        other.destroy();
      }
    });
  },
);

test('nbd: a client reading a large reply slowly, but reading, is not taken for one that stalls', { timeout: 60_000 }, async () => {
  const len = W.MAX_PAYLOAD;
  await withServer({ d: patternDevice(2 * len, len) }, { replyStallTimeoutMs: 1500 }, async (path) => {
    const peer = await NbdPeer.connect(path, 256 * 1024);
    try {
      await peer.open('d');
      peer.sendRequest({ type: W.NBD_CMD_READ, cookie: 1n, offset: len, length: len });
      const h = await peer.reader.read(16);
      assert.equal(h.readUInt32BE(4), 0);
      const started = performance.now();
      // 1 MiB every 100 ms: over 3 s for the reply, against a 1.5 s stall timeout (wide enough for a loaded machine's timers).
      for (let at = 0; at < len; at += MiB) {
        const piece = await peer.reader.read(MiB);
        assert.equal(piece[0], 1);
        await sleep(100);
      }
      assert.ok(performance.now() - started > 3000);
      peer.sendRequest({ type: W.NBD_CMD_READ, cookie: 2n, offset: 0, length: 4096 });
      assert.equal((await peer.readSimpleReply(() => 4096)).error, 0, 'still connected');
    } finally {
      peer.destroy();
    }
  });
});

test('nbd: an accept error on the listener is logged and does not end the process; the server keeps serving', { timeout: 30_000 }, async () => {
  // libuv hides a real EMFILE from Node (it accepts and closes the connection
  // with a spare descriptor, or leaves it queued), and ENOBUFS or EPERM from
  // accept cannot be provoked without root; so the error is raised the way
  // Node's net module raises it, as an 'error' event on the listening server.
  const listening: Server[] = [];
  const listen = Server.prototype.listen;
  Server.prototype.listen = function (this: Server, ...args: unknown[]) {
    listening.push(this);
    return (listen as (...a: unknown[]) => Server).apply(this, args);
  } as typeof listen;
  try {
    await withServer({ d: memoryDevice(MiB) }, {}, async (path, _server, logger) => {
      assert.equal(listening.length, 1);
      const err = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', errno: -24, syscall: 'accept' });
      for (let i = 0; i < 1000; i++) listening[0]!.emit('error', err);
      const logged = logger.lines.filter((l) => /EMFILE/.test(l));
      assert.ok(logged.length >= 1 && logged.length <= 2, `logged, but not 1000 times: ${logged.length}`);
      const p = await NbdPeer.connect(path);
      try {
        await p.open('d');
      } finally {
        p.destroy();
      }
    });
  } finally {
    Server.prototype.listen = listen;
  }
});

test('nbd: the limits are on by default, with values a booted VM never reaches', () => {
  assert.deepEqual(
    { ...NBD_SERVER_DEFAULTS },
    {
      maxConnections: 128,
      handshakeTimeoutMs: 30_000,
      idleTimeoutMs: 0,
      replyStallTimeoutMs: 120_000,
      keepAliveMs: 60_000,
      maxInFlight: 64,
      maxInFlightBytes: 64 * MiB,
      maxInFlightBytesTotal: 256 * MiB,
    },
  );
});

test(
  'nbd: bytes a device lends are given back once the kernel has the reply, never before, and all of them when the client goes away',
  { timeout: 60_000 },
  async () => {
    const size = 8 * MiB;
    const content = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
    let lent = 0;
    let releases = 0;
    const dev = {
      ...memoryDevice(size),
      async readPinned(offset: number, length: number) {
        const data = Buffer.from(content.subarray(offset, offset + length));
        lent += 1;
        let done = false;
        // In parts, as a read across blocks is lent.
        return {
          parts: [data.subarray(0, 1000), data.subarray(1000, length - 5), data.subarray(length - 5)],
          length,
          release() {
            assert.equal(done, false, 'released once');
            done = true;
            lent -= 1;
            releases += 1;
            // Given back, the memory may hold other bytes at once: a reply still being sent would carry these.
            data.fill(0xee);
          },
        };
      },
    };
    await withServer({ d: dev }, {}, async (path) => {
      const p = await NbdPeer.connect(path);
      try {
        await p.open('d');
        // Large replies, many in flight: they wait in the socket while later ones are read.
        const reads = 24;
        for (let k = 0; k < reads; k++) p.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(k), offset: (k % 8) * MiB, length: MiB });
        for (let k = 0; k < reads; k++) {
          const r = await p.readSimpleReply(() => MiB);
          assert.equal(r.error, 0);
          const off = Number(r.cookie % 8n) * MiB;
          assert.ok(r.data.equals(content.subarray(off, off + MiB)), `reply ${r.cookie} carries the bytes lent, not what they became after`);
        }
        for (let i = 0; i < 50 && releases < reads; i++) await sleep(20);
        assert.equal(releases, reads);
        assert.equal(lent, 0);
      } finally {
        p.destroy();
      }
      // A client that asks and never reads its replies, then goes: every lease comes back.
      const q = await NbdPeer.connect(path);
      await q.open('d');
      for (let k = 0; k < 16; k++) q.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(k), offset: k * 256 * 1024, length: 4 * MiB });
      for (let i = 0; i < 50 && lent < 2; i++) await sleep(20);
      assert.ok(lent > 0, 'replies wait in the socket, their bytes lent');
      q.destroy();
      for (let i = 0; i < 100 && lent > 0; i++) await sleep(20);
      assert.equal(lent, 0);
    });
    // A client that goes while the device is still reading: the bytes it lends after come back too.
    let started = 0;
    let out = 0;
    const slow = {
      ...memoryDevice(size),
      async readPinned(_offset: number, length: number) {
        started += 1;
        await sleep(300);
        out += 1;
        return { ...unpinned(Buffer.alloc(length)), release: () => void (out -= 1) };
      },
    };
    await withServer({ d: slow }, {}, async (path) => {
      const q = await NbdPeer.connect(path);
      await q.open('d');
      for (let k = 0; k < 8; k++) q.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(k), offset: k * MiB, length: MiB });
      for (let i = 0; i < 50 && started < 8; i++) await sleep(10);
      assert.equal(started, 8);
      q.destroy();
      await sleep(600);
      assert.equal(out, 0);
    });
  },
);
