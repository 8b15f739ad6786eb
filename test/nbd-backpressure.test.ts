/**
 * NBD backpressure: bytes and requests in flight per connection are bounded,
 * so a client that never reads its replies, or sends WRITEs faster than the
 * disk takes them, cannot grow the server's memory. The server runs in a
 * child process and its peak RSS (VmHWM) is what is measured. Unix sockets:
 * no TCP port, no root, no QEMU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NbdServerOptions } from '../src/nbd/nbd-server.js';
import * as W from '../src/nbd/wire.js';
import { nbdTempDir } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';

const MiB = 1 << 20;
const CHILD = fileURLToPath(new URL('./nbd-server-child.js', import.meta.url));

interface ChildConfig {
  readonly size: number;
  readonly block: number;
  readonly gated?: boolean;
  /** More export names for NBD_OPT_LIST, with long descriptions. */
  readonly listed?: number;
  readonly options?: Partial<Omit<NbdServerOptions, 'exports' | 'logger' | 'accept'>>;
}

interface DeviceStats {
  readonly reads: number;
  readonly writes: number;
  readonly active: number;
  readonly peakActive: number;
}

/** The server process: device counters over stdin/stdout, memory from /proc. */
class ServerChild {
  private readonly answers = new Map<number, (s: DeviceStats) => void>();
  private asked = 0;
  private readonly ready: Promise<void>;
  private readonly ended: Promise<never>;

  private constructor(private readonly child: ChildProcess) {
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    this.ended = new Promise((_r, reject) => child.once('exit', (code, signal) => reject(new Error(`server process ended (${code ?? signal})`))));
    this.ended.catch(() => undefined);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l === 'ready') return ready();
      const s = JSON.parse(l) as DeviceStats & { seq: number };
      this.answers.get(s.seq)?.(s);
      this.answers.delete(s.seq);
    });
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  }

  static async start(config: ChildConfig & { socket: string }): Promise<ServerChild> {
    const s = new ServerChild(spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] }));
    await Promise.race([s.ready, s.ended]);
    return s;
  }

  /** The device's counters (the answer comes once the server's event loop gets to it). */
  stats(): Promise<DeviceStats> {
    const seq = ++this.asked;
    const answer = new Promise<DeviceStats>((r) => this.answers.set(seq, r));
    this.child.stdin!.write(`stats ${seq}\n`);
    return Promise.race([answer, this.ended]);
  }

  openGate(): void {
    this.child.stdin!.write('open\n');
  }

  /** Resident set now and its peak since the last resetPeak, in bytes. */
  memory(): { rss: number; peak: number } {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kib('VmRSS'), peak: kib('VmHWM') };
  }

  resetPeak(): void {
    writeFileSync(`/proc/${this.child.pid}/clear_refs`, '5');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Waits until `progress()` has not changed for `quietMs` (the server has
 * stopped taking requests) or the server's RSS has grown past `giveUpAbove`
 * (no point waiting for more); returns the peak RSS growth over `base`.
 */
async function peakGrowthUntilQuiet(server: ServerChild, base: number, progress: () => Promise<number>, quietMs: number, giveUpAbove: number): Promise<number> {
  let last = -1;
  let quietSince = performance.now();
  for (;;) {
    const m = server.memory();
    if (m.peak - base > giveUpAbove) return m.peak - base;
    const now = await Promise.race([progress(), sleep(250).then(() => last)]);
    if (now !== last) {
      last = now;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= quietMs) return server.memory().peak - base;
    await sleep(25);
  }
}

async function withChild(config: ChildConfig, fn: (server: ServerChild, path: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await nbdTempDir();
  const path = join(dir, 'nbd.sock');
  let server: ServerChild | undefined;
  try {
    server = await ServerChild.start({ socket: path, ...config });
    await fn(server, path);
  } finally {
    await server?.stop();
    await cleanup();
  }
}

test(
  'nbd backpressure: 96 READs of 32 MiB (3 GiB) the client never reads keep server memory bounded; then every reply is right',
  { timeout: 300_000 },
  async () => {
    const count = 96;
    const len = W.MAX_PAYLOAD;
    await withChild({ size: count * len, block: len }, async (server, path) => {
      const peer = await NbdPeer.connect(path);
      try {
        await peer.open('d');
        peer.socket.pause(); // read nothing: replies pile up unless the server stops
        server.resetPeak();
        const base = server.memory().rss;
        for (let i = 0; i < count; i++) peer.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(i), offset: i * len, length: len });
        const growth = await peakGrowthUntilQuiet(server, base, async () => (await server.stats()).reads, 1500, 1024 * MiB);
        const { reads } = await server.stats();
        console.log(`server took ${reads} of ${count} READs of 32 MiB; peak RSS growth ${(growth / MiB).toFixed(0)} MiB`);
        assert.ok(growth < 256 * MiB, `server RSS grew ${(growth / MiB).toFixed(0)} MiB while the client read nothing`);
        assert.ok(reads < count, 'the server stopped reading requests');

        peer.socket.resume();
        const expected = Buffer.alloc(len);
        const seen = new Set<bigint>();
        for (let i = 0; i < count; i++) {
          const r = await peer.readSimpleReply(() => len);
          assert.equal(r.error, 0);
          assert.ok(!seen.has(r.cookie), 'one reply per cookie');
          seen.add(r.cookie);
          expected.fill(Number(r.cookie) & 0xff);
          assert.ok(r.data.equals(expected), `data of READ ${r.cookie}`);
        }
        assert.equal((await server.stats()).reads, count);
      } finally {
        peer.destroy();
      }
    });
  },
);

test('nbd backpressure: 100k small READs never read keep requests in flight and server memory bounded', { timeout: 300_000 }, async () => {
  const count = 100_000;
  const len = 4096;
  await withChild({ size: count * len, block: len }, async (server, path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.open('d');
      peer.socket.pause();
      server.resetPeak();
      const base = server.memory().rss;
      for (let i = 0; i < count; i++) peer.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(i), offset: i * len, length: len });
      const growth = await peakGrowthUntilQuiet(server, base, async () => (await server.stats()).reads, 1500, 1024 * MiB);
      const { reads } = await server.stats();
      console.log(`server took ${reads} of ${count} READs of 4 KiB; peak RSS growth ${(growth / MiB).toFixed(0)} MiB`);
      assert.ok(reads <= 1000, `the server answered ${reads} READs nobody reads`);
      assert.ok(growth < 64 * MiB, `server RSS grew ${(growth / MiB).toFixed(0)} MiB`);
      peer.socket.resume();
      for (let i = 0; i < count; i++) {
        const r = await peer.readSimpleReply(() => len);
        assert.equal(r.error, 0);
        assert.equal(r.data[0], Number(r.cookie) & 0xff);
      }
    } finally {
      peer.destroy();
    }
  });
});

test('nbd backpressure: WRITE payloads are not read ahead of a device that is not taking them', { timeout: 300_000 }, async () => {
  const count = 40;
  const len = W.MAX_PAYLOAD;
  await withChild({ size: count * len, block: len, gated: true }, async (server, path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.open('d');
      server.resetPeak();
      const base = server.memory().rss;
      // One payload buffer for every WRITE, sent with backpressure: first and
      // last byte set per request once the previous one has drained.
      const payload = Buffer.alloc(len);
      let sent = 0;
      const sending = (async () => {
        for (let i = 0; i < count; i++) {
          const head = Buffer.alloc(28);
          head.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
          head.writeUInt16BE(W.NBD_CMD_WRITE, 6);
          head.writeBigUInt64BE(BigInt(i), 8);
          head.writeBigUInt64BE(BigInt(i * len), 16);
          head.writeUInt32BE(len, 24);
          payload[0] = payload[len - 1] = i & 0xff;
          peer.socket.write(head);
          if (!peer.socket.write(payload)) await new Promise((r) => peer.socket.once('drain', r));
          sent = i + 1;
        }
      })();
      const growth = await peakGrowthUntilQuiet(server, base, async () => (await server.stats()).writes * count + sent, 1500, 1024 * MiB);
      const { writes } = await server.stats();
      console.log(`device holds ${writes} of ${count} WRITEs of 32 MiB; client sent ${sent}; peak RSS growth ${(growth / MiB).toFixed(0)} MiB`);
      assert.ok(growth < 256 * MiB, `server RSS grew ${(growth / MiB).toFixed(0)} MiB with WRITEs waiting on the device`);
      assert.ok(writes < count, 'the server stopped reading WRITE payloads');
      server.openGate();
      await sending;
      for (let i = 0; i < count; i++) assert.equal((await peer.readSimpleReply()).error, 0);
      assert.equal((await server.stats()).writes, count);
    } finally {
      peer.destroy();
    }
  });
});

test('nbd backpressure: connections that never read share one server-wide budget (256 MiB by default)', { timeout: 300_000 }, async () => {
  const clients = 6;
  const perClient = 10;
  const len = W.MAX_PAYLOAD;
  await withChild({ size: clients * perClient * len, block: len }, async (server, path) => {
    const peers: NbdPeer[] = [];
    try {
      for (let c = 0; c < clients; c++) {
        const p = await NbdPeer.connect(path);
        peers.push(p);
        await p.open('d');
        p.socket.pause();
      }
      server.resetPeak();
      const base = server.memory().rss;
      peers.forEach((p, c) => {
        for (let i = 0; i < perClient; i++) {
          const n = c * perClient + i;
          p.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(n), offset: n * len, length: len });
        }
      });
      const growth = await peakGrowthUntilQuiet(server, base, async () => (await server.stats()).reads, 1500, 1024 * MiB);
      const { reads } = await server.stats();
      console.log(`${clients} connections: server took ${reads} READs of 32 MiB; peak RSS growth ${(growth / MiB).toFixed(0)} MiB`);
      // 64 MiB per connection alone would allow 12 READs (384 MiB).
      assert.ok(reads <= 8, `${reads} READs of 32 MiB held at once`);
      assert.ok(growth < 320 * MiB, `server RSS grew ${(growth / MiB).toFixed(0)} MiB`);
      await Promise.all(
        peers.map(async (p) => {
          p.socket.resume();
          for (let i = 0; i < perClient; i++) {
            const r = await p.readSimpleReply(() => len);
            assert.equal(r.error, 0);
            assert.equal(r.data[0], Number(r.cookie) & 0xff);
            assert.equal(r.data[len - 1], Number(r.cookie) & 0xff);
          }
        }),
      );
      assert.equal((await server.stats()).reads, clients * perClient);
    } finally {
      for (const p of peers) p.destroy();
    }
  });
});

test('nbd backpressure: a client flooding NBD_OPT_LIST without reading the answers keeps server memory bounded', { timeout: 300_000 }, async () => {
  const floods = 5000;
  // 500 names with long descriptions: about 75 KB per answer, 375 MB for the flood.
  await withChild({ size: MiB, block: MiB, listed: 500 }, async (server, path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.greet();
      peer.socket.pause();
      server.resetPeak();
      const base = server.memory().rss;
      const one = Buffer.alloc(16);
      one.writeBigUInt64BE(W.IHAVEOPT, 0);
      one.writeUInt32BE(W.NBD_OPT_LIST, 8);
      peer.socket.write(Buffer.concat(Array.from({ length: floods }, () => one)));
      let last = -1;
      const growth = await peakGrowthUntilQuiet(
        server,
        base,
        async () => {
          // Progress is the server's memory moving; stats do not count options.
          const now = Math.round(server.memory().rss / MiB);
          last = now;
          return now;
        },
        1500,
        1024 * MiB,
      );
      console.log(`NBD_OPT_LIST flood: peak RSS growth ${(growth / MiB).toFixed(0)} MiB (rss now ${last} MiB)`);
      assert.ok(growth < 64 * MiB, `server RSS grew ${(growth / MiB).toFixed(0)} MiB`);
      // Reading resumes the flood's answers; the first few are whole.
      peer.socket.resume();
      for (let i = 0; i < 3; i++) {
        const replies = await peer.readOptionReplies();
        assert.equal(replies.length, 502);
        assert.equal(replies.at(-1)!.type, W.NBD_REP_ACK);
      }
    } finally {
      peer.destroy();
    }
  });
});
