import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCompression } from '../src/compress/codec.js';
import { BackupFileReader } from '../src/repository/index.js';
import { cli, randomBytes, readPoint, rng, serviceAt, tempDir, writeAt } from './helpers.js';

const MiB = 1 << 20;
const KiB = 1024;

test('identical blocks inside a file are stored once; zero blocks are not stored', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const block = randomBytes(rng(1), 256 * KiB);
    const data = Buffer.alloc(16 * 256 * KiB);
    for (const i of [0, 3, 4, 9, 15]) block.copy(data, i * 256 * KiB); // five copies, eleven zero blocks
    randomBytes(rng(2), 256 * KiB).copy(data, 7 * 256 * KiB);
    const disk = join(dir, 'd.img');
    await writeFile(disk, data);
    const svc = serviceAt('2026-01-01T00:00:00Z');
    const repo = join(dir, 'r');
    await svc.initRepository(repo, 256 * KiB, parseCompression('none'));
    await svc.createJob(repo, { name: 'j', disks: [disk], method: 'forward', retainPoints: 5, activeFullDays: [] });
    const r = await svc.backup(repo, 'j', {});
    assert.equal(r.blocksZero, 10);
    assert.equal(r.blocksDeduped, 4);
    assert.equal(r.bytesStored, 2 * 256 * KiB, 'two distinct blocks stored, uncompressed');
    assert.ok((await readPoint(repo, 'j', 'latest')).equals(data));
    const file = (await readdir(join(repo, 'jobs', 'j'))).find((n) => n.endsWith('.vbk'))!;
    assert.ok((await stat(join(repo, 'jobs', 'j', file))).size < 3 * 256 * KiB);
  } finally {
    await cleanup();
  }
});

test('increments: blocks that become zero, disks that grow or shrink, and the stored VM config', async () => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(4);
  try {
    const disk = join(dir, 'd.img');
    await writeFile(disk, randomBytes(rand, 3 * MiB + 100));
    await writeFile(
      join(dir, 'vm.json'),
      JSON.stringify({ name: 'db1', vcpus: 8, memoryMiB: 16384, firmware: 'uefi', disks: [{ name: 'root', bus: 'nvme' }] }),
    );
    const repo = join(dir, 'r');
    const svc = serviceAt('2026-01-01T00:00:00Z');
    await svc.initRepository(repo, 1 * MiB, parseCompression('zstd:3'));
    await svc.createJob(repo, { name: 'j', disks: [disk], method: 'forever', retainPoints: 2, activeFullDays: [], vmConfigFile: join(dir, 'vm.json') });
    const states: Buffer[] = [];
    const step = async (opts: { acceptSourceChange?: boolean } = {}): Promise<void> => {
      await svc.backup(repo, 'j', opts);
      states.push(await readFile(disk));
    };
    await step();
    await writeAt(disk, Buffer.alloc(MiB), MiB); // block 1 becomes zero
    await step();
    await truncate(disk, 5 * MiB + 7); // grows
    await writeAt(disk, randomBytes(rand, 1000), 5 * MiB - 1000);
    await step();
    await truncate(disk, 2 * MiB - 3); // shrinks
    await assert.rejects(step(), (err: Error & { code?: string }) => err.code === 'LFB_ERR_SOURCE_CHANGED', 'less than half: refused unless accepted');
    await step({ acceptSourceChange: true });
    const { points } = await svc.points(repo, 'j');
    assert.equal(points.length, 2);
    assert.equal(points[0]!.kind, 'full', 'merged full');
    assert.deepEqual(
      points.map((p) => p.diskSizes[0]),
      [5 * MiB + 7, 2 * MiB - 3],
    );
    assert.ok((await readPoint(repo, 'j', points[0]!.id)).equals(states[2]!));
    assert.ok((await readPoint(repo, 'j', points[1]!.id)).equals(states[3]!));
    const vm = points[1]!.vm;
    assert.equal(vm.name, 'db1');
    assert.equal(vm.vcpus, 8);
    assert.equal(vm.memoryMiB, 16384);
    assert.equal(vm.firmware, 'uefi');
    assert.deepEqual(
      vm.disks.map((d) => [d.name, d.bus, d.sizeBytes]),
      [['root', 'nvme', 2 * MiB - 3]],
    );
    // The merged full records what it absorbed, and opens at its newest committed root.
    const full = await BackupFileReader.open(join(repo, 'jobs', 'j', points[0]!.file));
    assert.equal(full.root.mergedCount, 2);
    assert.equal(full.slot.generation, 3);
    await full.close();
  } finally {
    await cleanup();
  }
});

test('defaults: a VM config is stored even without --vm-config', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'web.img');
    await writeFile(disk, randomBytes(rng(8), MiB));
    const repo = join(dir, 'r');
    const svc = serviceAt('2026-01-01T00:00:00Z');
    await svc.initRepository(repo, MiB, parseCompression('lz4'));
    await svc.createJob(repo, { name: 'web', disks: [disk], method: 'forward', retainPoints: 3, activeFullDays: [] });
    await svc.backup(repo, 'web', {});
    const vm = (await svc.points(repo, 'web')).points[0]!.vm;
    assert.deepEqual({ ...vm, disks: undefined }, { name: 'web', vcpus: 2, memoryMiB: 2048, firmware: 'bios', machine: 'q35', disks: undefined });
    assert.deepEqual(vm.disks, [{ name: 'disk0', bus: 'virtio', sizeBytes: MiB, source: 'web.img', format: 'raw' }]);
  } finally {
    await cleanup();
  }
});

test('block devices: back up a loop device, restore onto another one', async () => {
  const { dir, cleanup } = await tempDir();
  const loops: string[] = [];
  try {
    const img = join(dir, 'src.img');
    const data = Buffer.alloc(6 * MiB);
    randomBytes(rng(6), 2 * MiB).copy(data, MiB);
    await writeFile(img, data);
    const dst = join(dir, 'dst.img');
    await writeFile(dst, Buffer.alloc(6 * MiB, 0xee)); // garbage: zero blocks must be written too
    for (const f of [img, dst]) loops.push(execFileSync('losetup', ['--find', '--show', f]).toString().trim());
    const repo = join(dir, 'r');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    const c = await cli(['job', 'create', 'dev', '--repo', repo, '--disk', loops[0]!]);
    assert.equal(c.code, 0, c.stderr);
    const b = await cli(['backup', 'dev', '--repo', repo, '--json']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal((JSON.parse(b.stdout) as { bytesRead: number }).bytesRead, 6 * MiB, 'block device size read from sysfs');
    const r = await cli(['restore', 'dev', '--repo', repo, '--point', 'latest', '--to', loops[1]!, '--force']);
    assert.equal(r.code, 0, r.stderr);
    execFileSync('losetup', ['-d', loops.pop()!]);
    assert.ok((await readFile(dst)).equals(data));
  } finally {
    for (const l of loops) execFileSync('losetup', ['-d', l]);
    await cleanup();
  }
});

test('a 2 TiB sparse disk backs up and restores without memory growing with its size', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'big.img');
    await writeFile(disk, '');
    await truncate(disk, 2 * 1024 * 1024 * MiB);
    const rand = rng(12);
    const pieces = [0, 777 * MiB + 12345, 1024 * 1024 * MiB - 5, 2 * 1024 * 1024 * MiB - 3 * MiB].map((off) => ({ off, data: randomBytes(rand, 2 * MiB) }));
    for (const p of pieces) await writeAt(disk, p.data, p.off);
    const repo = join(dir, 'r');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    assert.equal((await cli(['job', 'create', 'big', '--repo', repo, '--disk', disk])).code, 0);
    const rss = async (args: string[]): Promise<number> => {
      const out = join(dir, 'rss');
      execFileSync('/usr/bin/time', ['-f', '%M', '-o', out, process.execPath, ...args]);
      return Number((await readFile(out, 'utf8')).trim().split('\n').pop()) * 1024;
    };
    const { BIN } = await import('./helpers.js');
    const full = await rss([BIN, 'backup', 'big', '--repo', repo]);
    await writeAt(disk, randomBytes(rand, 4096), 3 * 1024 * MiB);
    const incr = await rss([BIN, 'backup', 'big', '--repo', repo]);
    // Block map of 2 Mi blocks is ~20 MiB; Node and the worker threads take the rest.
    for (const [what, bytes] of [
      ['full', full],
      ['increment', incr],
    ] as const)
      assert.ok(bytes < 400 * MiB, `${what} backup peak RSS ${(bytes / MiB).toFixed(0)} MiB`);
    const out = join(dir, 'restored.img');
    t.diagnostic(`peak RSS: full ${(full / MiB).toFixed(0)} MiB, increment ${(incr / MiB).toFixed(0)} MiB`);
    const restoreRss = await rss([BIN, 'restore', 'big', '--repo', repo, '--point', 'latest', '--to', out]);
    assert.ok(restoreRss < 400 * MiB, `restore peak RSS ${(restoreRss / MiB).toFixed(0)} MiB`);
    const st = await stat(out);
    assert.equal(st.size, 2 * 1024 * 1024 * MiB);
    assert.ok(st.blocks * 512 < 64 * MiB, 'restored sparse');
    const { open } = await import('node:fs/promises');
    const fh = await open(out, 'r');
    try {
      for (const p of pieces) {
        const got = Buffer.alloc(p.data.length);
        await fh.read(got, 0, got.length, p.off);
        assert.ok(got.equals(p.data), `data at ${p.off}`);
      }
    } finally {
      await fh.close();
    }
  } finally {
    await cleanup();
  }
});

test('many damaged blocks in the read-ahead window: a clean error, never a crash', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'd.img');
    await writeFile(disk, randomBytes(rng(77), 32 * 256 * KiB));
    const repo = join(dir, 'r');
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K', '--compression', 'none'])).code, 0);
    assert.equal((await cli(['job', 'create', 'j', '--repo', repo, '--disk', disk])).code, 0);
    assert.equal((await cli(['backup', 'j', '--repo', repo])).code, 0);
    const file = join(
      repo,
      'jobs',
      'j',
      (await readdir(join(repo, 'jobs', 'j'))).find((n) => n.endsWith('.vbk'))!,
    );
    // Damage every stored block (the data area starts at 12288; blocks are stored uncompressed).
    for (let b = 0; b < 32; b++) await writeAt(file, Buffer.from('damaged!'), 12288 + b * 256 * KiB + 1000);
    for (let i = 0; i < 4; i++) {
      const r = await cli(['restore', 'j', '--repo', repo, '--point', 'latest', '--to', join(dir, `o${i}.raw`)]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /block 0 \(file offset 12288\) fails its checksum.*\[LFB_ERR_BLOCK_CORRUPT\]/);
    }
  } finally {
    await cleanup();
  }
});

test('a write-back that fails while a backup file is written fails the run (LFB_ERR_IO), leaves no point, and the next run succeeds', async () => {
  const { dir, cleanup } = await tempDir();
  // The background fdatasync of a file being written: Linux reports a write-back error to one
  // fsync only, so an error it meets must not be lost before the commit's own fsync.
  const fh = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
  await fh.close();
  const realDatasync = proto.datasync;
  try {
    const disk = join(dir, 'd.img');
    const data = randomBytes(rng(7), 24 * 1024 * KiB); // incompressible: 24 MiB stored, write-behind every 8 MiB
    await writeFile(disk, data);
    const svc = serviceAt('2026-01-01T00:00:00Z');
    const repo = join(dir, 'r');
    await svc.initRepository(repo, 1024 * KiB, parseCompression('none'));
    await svc.createJob(repo, { name: 'j', disks: [disk], method: 'forward', retainPoints: 5, activeFullDays: [] });
    let failed = 0;
    proto.datasync = function () {
      failed += 1;
      return Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    };
    await assert.rejects(svc.backup(repo, 'j', {}), (e: Error & { code?: string }) => e.code === 'LFB_ERR_IO' && /fsync/.test(e.message));
    assert.ok(failed >= 1, 'the write-back ran');
    proto.datasync = realDatasync;
    assert.deepEqual(
      (await readdir(join(repo, 'jobs', 'j'))).filter((n) => /\.vbk/.test(n)),
      [],
      'no backup file, not even a temporary one',
    );
    const r = await svc.backup(repo, 'j', {});
    assert.equal(r.kind, 'full');
    assert.ok((await readPoint(repo, 'j', 'latest')).equals(data));
  } finally {
    proto.datasync = realDatasync;
    await cleanup();
  }
});
