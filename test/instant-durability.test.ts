import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NfsDiskClient, STABLE } from '../src/testing/nfs-disk-client.js';
import { cli, randomBytes, rng, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

/**
 * Process-level durability of instant-recovery sessions (issue 12): real
 * `lifeboat serve`, real clients (qemu-io over NBD, NFSv3 FILE_SYNC writes),
 * `kill -9` of the server, restart, and every write a client was told is
 * durable must read back byte for byte. A write that was not acknowledged
 * may or may not be there, but nothing else may change.
 */

const KiB = 1024;
/** The overlay's granule: each region is one whole granule and one granule written in part. */
const GRANULE = 64 * KiB;
const REGION = 2 * GRANULE;

interface DiskWrite {
  readonly via: 'nbd' | 'nfs';
  readonly offset: number;
  readonly length: number;
  /** Every byte of the write. */
  readonly pattern: number;
  acked: boolean;
}

/** Child processes of a test, all killed in its `finally`. */
class Children {
  private readonly live = new Set<ChildProcess>();

  /** Runs a tool; resolves with its exit code and everything it printed. */
  run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve, reject) => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.live.add(p);
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        this.live.delete(p);
        resolve({ code, out });
      });
    });
  }

  async killAll(): Promise<void> {
    await Promise.all(
      [...this.live].map(async (p) => {
        const closed = new Promise((r) => p.once('close', r));
        p.kill('SIGKILL');
        await closed;
      }),
    );
  }
}

/** A repository with one point of `base`, a server, and session `s` on it. */
async function servedSession(dir: string, base: Buffer): Promise<{ repo: string; server: Server }> {
  const repo = join(dir, 'repo');
  await writeFile(join(dir, 'vm.img'), base);
  assert.equal((await cli(['repo', 'init', repo])).code, 0);
  assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', join(dir, 'vm.img')])).code, 0);
  const b = await cli(['backup', 'vm', '--repo', repo]);
  assert.equal(b.code, 0, b.stderr);
  const server = await startServer(repo, ['--no-portmap']);
  try {
    const r = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 's']);
    assert.equal(r.code, 0, r.stderr);
  } catch (err) {
    await kill9(server);
    throw err;
  }
  return { repo, server };
}

const nbdUri = (s: Server): string => `nbd://127.0.0.1:${s.nbdPort}/s/disk0`;

/** The whole session disk as a new NBD client reads it. */
async function readDisk(children: Children, s: Server, dir: string): Promise<Buffer> {
  const to = join(dir, 'read-back.raw');
  const r = await children.run('nbdcopy', [nbdUri(s), to]);
  assert.equal(r.code, 0, `nbdcopy: ${r.out}`);
  return readFile(to);
}

/**
 * What the disk may hold. `writes` are in the order they were sent (writes
 * to the same bytes never overlap in time). Per byte, an acknowledged write
 * is all that may be there, until a later write; an unacknowledged one may
 * or may not be there; bytes never written are the backup's. Returns the
 * acknowledged writes found missing and any other byte that is wrong.
 */
function compare(disk: Buffer, base: Buffer, writes: readonly DiskWrite[]): { lost: DiskWrite[]; foreign: string[] } {
  assert.equal(disk.length, base.length, 'disk size');
  const lost = new Set<DiskWrite>();
  const foreign: string[] = [];
  const byRegion = new Map<number, DiskWrite[]>();
  for (const w of writes) {
    const r = Math.floor(w.offset / REGION);
    assert.equal(Math.floor((w.offset + w.length - 1) / REGION), r, 'a write stays in its region');
    byRegion.set(r, [...(byRegion.get(r) ?? []), w]);
  }
  for (let r = 0; r * REGION < disk.length; r++) {
    const [start, end] = [r * REGION, Math.min(disk.length, (r + 1) * REGION)];
    const ws = byRegion.get(r) ?? [];
    // Segments between the edges of writes: each lies wholly inside or outside every write.
    const edges = [...new Set([start, end, ...ws.flatMap((w) => [w.offset, w.offset + w.length])])].sort((a, b) => a - b);
    for (let e = 0; e + 1 < edges.length; e++) {
      const [from, to] = [edges[e]!, edges[e + 1]!];
      let settled: DiskWrite | undefined;
      let maybe: DiskWrite[] = [];
      for (const w of ws) {
        if (w.offset > from || w.offset + w.length < to) continue;
        if (w.acked) {
          settled = w;
          maybe = [];
        } else maybe.push(w);
      }
      if (!settled && maybe.length === 0 && disk.subarray(from, to).equals(base.subarray(from, to))) continue;
      const patterns = new Set([...(settled ? [settled] : []), ...maybe].map((w) => w.pattern));
      for (let at = from; at < to; at++) {
        const b = disk[at]!;
        if (patterns.has(b) || (!settled && b === base[at])) continue;
        if (settled) lost.add(settled);
        else
          foreign.push(
            `byte ${at} is 0x${b.toString(16)}; ${maybe.length ? 'an unacknowledged write or ' : ''}the backup's 0x${base[at]!.toString(16)} may be there`,
          );
        break;
      }
    }
  }
  return { lost: [...lost], foreign };
}

const describe = (ws: readonly DiskWrite[]): string =>
  ws
    .slice(0, 8)
    .map((w) => `${w.via} ${w.length} B at ${w.offset} (0x${w.pattern.toString(16)})`)
    .join('; ');

/** qemu-io's acknowledgements: the offsets of the writes it printed "wrote" for. */
function wroteOffsets(out: string): Set<number> {
  return new Set([...out.matchAll(/wrote (\d+)\/\d+ bytes at offset (\d+)/g)].map((m) => Number(m[2])));
}

test(
  'durability (issue 12, defect 1): four qemu-io writers, each 64 KiB + 4 KiB pair flushed, all acknowledged; after kill -9 all 64 partial writes are there',
  { timeout: 2 * 60_000 },
  async (t: TestContext) => {
    const { dir, cleanup } = await tempDir();
    const children = new Children();
    let server: Server | undefined;
    try {
      const writers = 4;
      const regionsEach = 16;
      const base = randomBytes(rng(1201), writers * regionsEach * REGION);
      ({ server } = await servedSession(dir, base));
      const writes: DiskWrite[] = [];
      const commands: string[][] = [];
      for (let w = 0; w < writers; w++) {
        const cmds: string[] = [];
        for (let i = 0; i < regionsEach; i++) {
          const r = w * regionsEach + i;
          const whole: DiskWrite = { via: 'nbd', offset: r * REGION, length: GRANULE, pattern: 0x10 + r, acked: false };
          // The partial write lands in the region's second granule, which must first be copied from the backup.
          const part: DiskWrite = { via: 'nbd', offset: r * REGION + GRANULE + 4 * KiB * i, length: 4 * KiB, pattern: 0x80 + r, acked: false };
          writes.push(whole, part);
          for (const x of [whole, part]) cmds.push('-c', `write -P 0x${x.pattern.toString(16)} ${x.offset} ${x.length}`);
          cmds.push('-c', 'flush');
        }
        commands.push(cmds);
      }
      const uri = nbdUri(server);
      const runs = await Promise.all(commands.map((cmds) => children.run('qemu-io', ['-f', 'raw', ...cmds, uri])));
      for (const [w, r] of runs.entries()) {
        assert.equal(r.code, 0, `qemu-io writer ${w}: ${r.out}`);
        assert.equal(wroteOffsets(r.out).size, 2 * regionsEach, `writer ${w} acknowledged every write`);
      }
      for (const w of writes) w.acked = true;

      const before = compare(await readDisk(children, server, dir), base, writes);
      assert.deepEqual(before.foreign, []);
      assert.equal(before.lost.length, 0, `before the kill, missing: ${describe(before.lost)}`);

      await kill9(server);
      server = undefined;
      server = await startServer(join(dir, 'repo'), ['--no-portmap']);
      const after = compare(await readDisk(children, server, dir), base, writes);
      const lostParts = after.lost.filter((w) => w.length === 4 * KiB);
      t.diagnostic(`after kill -9: ${after.lost.length} of ${writes.length} acknowledged writes missing, ${lostParts.length} of 64 partial ones`);
      assert.deepEqual(after.foreign, []);
      assert.equal(lostParts.length, 0, `${lostParts.length} of 64 acknowledged partial 4 KiB writes lost after kill -9: ${describe(lostParts)}`);
      assert.equal(after.lost.length, 0, `acknowledged writes lost after kill -9: ${describe(after.lost)}`);
    } finally {
      await children.killAll();
      if (server) await kill9(server);
      await cleanup();
    }
  },
);

/**
 * The server of the random test: one at a time, replaced after each kill.
 * `generation` tells a writer its connection belongs to a dead server.
 */
interface Live {
  server: Server | undefined;
  generation: number;
  stopping: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitForServer(live: Live): Promise<Server | undefined> {
  while (!live.stopping && !live.server) await sleep(20);
  return live.stopping ? undefined : live.server;
}

/** The n-th batch of a writer: its region (going round them) and two fills that differ from the region's previous ones. */
function nth(regions: readonly number[], n: number): { r: number; patterns: [number, number] } {
  return { r: regions[n % regions.length]!, patterns: [1 + ((2 * n) % 255), 1 + ((2 * n + 1) % 255)] };
}

/** One qemu-io per batch: a 64 KiB and a 4 KiB write in a region (each FUA or not, at random), then a flush. */
async function nbdWriter(live: Live, children: Children, regions: readonly number[], rand: () => number, writes: DiskWrite[]): Promise<void> {
  for (let n = 0; ; n++) {
    const s = await waitForServer(live);
    if (!s) return;
    const { r, patterns } = nth(regions, n);
    const fua = [rand() < 0.5, rand() < 0.5];
    const batch: DiskWrite[] = [
      { via: 'nbd', offset: r * REGION, length: GRANULE, pattern: patterns[0], acked: false },
      { via: 'nbd', offset: r * REGION + GRANULE + 4 * KiB * Math.floor(rand() * 16), length: 4 * KiB, pattern: patterns[1], acked: false },
    ];
    writes.push(...batch);
    const cmds = batch.flatMap((w, i) => ['-c', `write ${fua[i] ? '-f ' : ''}-P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`]);
    const res = await children.run('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', nbdUri(s)]);
    const wrote = wroteOffsets(res.out);
    // All of it is durable once the flush succeeded (exit 0); a FUA write as soon as it was acknowledged.
    batch.forEach((w, i) => (w.acked = res.code === 0 || (fua[i]! && wrote.has(w.offset))));
  }
}

/** Going round its regions: a whole-granule and an unaligned partial FILE_SYNC WRITE, both in flight at once. */
async function nfsWriter(live: Live, regions: readonly number[], rand: () => number, writes: DiskWrite[]): Promise<void> {
  let client: { c: NfsDiskClient; generation: number } | undefined;
  try {
    for (let n = 0; ; n++) {
      const s = await waitForServer(live);
      if (!s) return;
      const { r, patterns } = nth(regions, n);
      const partLength = 512 + Math.floor(rand() * 4000);
      const batch: DiskWrite[] = [
        { via: 'nfs', offset: r * REGION, length: GRANULE, pattern: patterns[0], acked: false },
        { via: 'nfs', offset: r * REGION + GRANULE + Math.floor(rand() * (GRANULE - partLength)), length: partLength, pattern: patterns[1], acked: false },
      ];
      writes.push(...batch);
      try {
        if (client?.generation !== live.generation) {
          client?.c.close();
          client = undefined;
          client = { c: await NfsDiskClient.open(s.nfsPort, s.mountPort, '/lifeboat', ['s', 'disk0-flat.vmdk']), generation: live.generation };
        }
        const c = client.c;
        await Promise.all(
          batch.map(async (w) => {
            const reply = await c.write(w.offset, Buffer.alloc(w.length, w.pattern), STABLE.FILE_SYNC);
            w.acked = reply.count === w.length && reply.committed === STABLE.FILE_SYNC;
          }),
        );
      } catch {
        // The server went away mid-call: whatever was not acknowledged stays so.
      }
    }
  } finally {
    client?.c.close();
  }
}

test(
  'durability (issue 12): qemu-io writers over NBD (FUA and flush) and NFS FILE_SYNC writers, kill -9 of serve at random moments; every acknowledged write survives',
  { timeout: 2 * 60_000 },
  async (t: TestContext) => {
    const seed = 1202;
    const rand = rng(seed);
    const { dir, cleanup } = await tempDir();
    const children = new Children();
    const live: Live = { server: undefined, generation: 0, stopping: false };
    const writes: DiskWrite[] = [];
    let writers: Promise<unknown> | undefined;
    try {
      const nbdWriters = 4;
      const nbdRegions = 48;
      const nfsWriters = 2;
      const nfsRegions = 32;
      const regions = nbdWriters * nbdRegions + nfsWriters * nfsRegions;
      const base = randomBytes(rand, regions * REGION);
      const { repo, server } = await servedSession(dir, base);
      live.server = server;
      const own = (first: number, n: number): number[] => Array.from({ length: n }, (_, i) => first + i);
      writers = Promise.all([
        ...Array.from({ length: nbdWriters }, (_, w) => nbdWriter(live, children, own(w * nbdRegions, nbdRegions), rng(seed * 100 + w), writes)),
        ...Array.from({ length: nfsWriters }, (_, w) =>
          nfsWriter(live, own(nbdWriters * nbdRegions + w * nfsRegions, nfsRegions), rng(seed * 200 + w), writes),
        ),
      ]);
      const kills = 4;
      for (let k = 0; k < kills; k++) {
        await sleep(300 + Math.floor(rand() * 1200));
        const dying = live.server!;
        live.server = undefined;
        live.generation += 1;
        await kill9(dying);
        t.diagnostic(`kill ${k + 1}: ${writes.length} writes issued, ${writes.filter((w) => w.acked).length} acknowledged so far`);
        live.server = await startServer(repo, ['--no-portmap']);
      }
      await sleep(500);
      live.stopping = true;
      await writers;
      // Everything acknowledged, then the crash: the case where a flush's promise is all there is.
      const last = live.server;
      live.server = undefined;
      await kill9(last);
      live.server = await startServer(repo, ['--no-portmap']);

      const acked = writes.filter((w) => w.acked);
      const byVia = (via: string, ws: readonly DiskWrite[]): number => ws.filter((w) => w.via === via).length;
      t.diagnostic(
        `seed ${seed}: ${writes.length} writes, ${acked.length} acknowledged (nbd ${byVia('nbd', acked)} of ${byVia('nbd', writes)}, nfs ${byVia('nfs', acked)} of ${byVia('nfs', writes)})`,
      );
      // Without enough acknowledged writes of each kind the test would prove nothing.
      assert.ok(byVia('nbd', acked) >= 20, `only ${byVia('nbd', acked)} NBD writes acknowledged`);
      assert.ok(byVia('nfs', acked) >= 20, `only ${byVia('nfs', acked)} NFS writes acknowledged`);

      const { lost, foreign } = compare(await readDisk(children, live.server, dir), base, writes);
      assert.deepEqual(foreign, []);
      assert.equal(lost.length, 0, `seed ${seed}: ${lost.length} of ${acked.length} acknowledged writes lost (${describe(lost)})`);
    } finally {
      live.stopping = true;
      await children.killAll();
      await writers?.catch(() => undefined);
      await children.killAll();
      if (live.server) await kill9(live.server);
      await cleanup();
    }
  },
);
