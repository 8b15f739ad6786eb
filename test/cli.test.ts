import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cp, mkdir, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DATA_START } from '../src/format/constants.js';
import { writeCheckedJson } from '../src/repository/checked-json.js';
import { cli, randomBytes, rng, tempDir, writeAt } from './helpers.js';

const MiB = 1 << 20;

function ok(r: { code: number | null; stderr: string; stdout: string }, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** Asserts a failure with the given exit code and stable error code in the message. */
function fails(r: { code: number | null; stderr: string }, exit: number, code: string): void {
  assert.equal(r.code, exit, `expected exit ${exit}, got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`), r.stderr);
}

test('cli: forward chain end to end, raw and qcow2 restores of every point', async () => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(5);
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    // 9.5 MiB: not a multiple of the block size; a zero region in the middle.
    const data = Buffer.alloc(9.5 * MiB);
    randomBytes(rand, 3 * MiB).copy(data, 0);
    randomBytes(rand, 2 * MiB).copy(data, 6 * MiB);
    await writeFile(disk, data);
    const env = { LIFEBOAT_NOW: '2026-06-01T08:00:00Z' };
    ok(await cli(['repo', 'init', repo, '--block-size', '512K', '--compression', 'lz4'], env), 'init');
    fails(await cli(['repo', 'init', repo], env), 5, 'LFB_ERR_REPO_EXISTS');
    fails(await cli(['repo', 'init', join(dir, 'r2'), '--block-size', '3M'], env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    fails(await cli(['repo', 'init', join(dir, 'r2'), '--compression', 'gzip'], env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    ok(await cli(['job', 'create', 'web', '--repo', repo, '--disk', disk, '--retain-points', '10'], env), 'job create');
    fails(await cli(['job', 'create', 'web', '--repo', repo, '--disk', disk], env), 5, 'LFB_ERR_JOB_EXISTS');
    fails(await cli(['job', 'create', 'x', '--repo', repo, '--disk', join(dir, 'missing.img')], env), 3, 'LFB_ERR_DISK_NOT_FOUND');
    fails(await cli(['job', 'create', 'x', '--repo', repo, '--disk', disk, '--method', 'sideways'], env), 2, 'LFB_ERR_USAGE');
    fails(await cli(['backup', 'web', '--repo', repo, '--frobnicate'], env), 2, 'LFB_ERR_USAGE');
    fails(await cli(['backup', 'nope', '--repo', repo], env), 3, 'LFB_ERR_JOB_NOT_FOUND');
    fails(await cli(['backup', 'web', '--repo', join(dir, 'nowhere')], env), 3, 'LFB_ERR_REPO_NOT_FOUND');
    fails(await cli(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', join(dir, 'x')], env), 3, 'LFB_ERR_NO_POINTS');

    const states: Buffer[] = [];
    for (let run = 0; run < 3; run++) {
      if (run > 0) {
        await writeAt(disk, randomBytes(rand, 100_000), Math.floor(rand() * 9 * MiB));
        await writeAt(disk, Buffer.alloc(MiB), 6 * MiB); // a block that becomes zero
      }
      ok(await cli(['backup', 'web', '--repo', repo], { LIFEBOAT_NOW: `2026-06-0${run + 1}T08:00:00Z` }), `backup ${run}`);
      states.push(await readFile(disk));
    }
    const list = JSON.parse(ok(await cli(['points', 'web', '--repo', repo, '--json']), 'points')) as Record<string, unknown>[];
    assert.equal(list.length, 3);
    for (const p of list) for (const k of ['id', 'createdAt', 'kind', 'file']) assert.ok(k in p, `points --json lacks ${k}`);
    assert.deepEqual(
      list.map((p) => p['kind']),
      ['full', 'increment', 'increment'],
    );
    assert.equal(list[0]!['createdAt'], '2026-06-01T08:00:00.000Z');

    const before = await snapshot(join(repo, 'jobs', 'web'));
    for (let i = 0; i < 3; i++) {
      const id = String(list[i]!['id']);
      const raw = join(dir, `p${i}.raw`);
      ok(await cli(['restore', 'web', '--repo', repo, '--point', i === 2 ? 'latest' : id.slice(0, 6), '--to', raw]), `restore ${i}`);
      assert.ok((await readFile(raw)).equals(states[i]!), `point ${i} raw differs`);
      // Sparse: the zero region takes no space.
      const st = await stat(raw);
      assert.ok(st.blocks * 512 < st.size, `restored raw is not sparse (${st.blocks * 512} of ${st.size})`);
      const q = join(dir, `p${i}.qcow2`);
      ok(await cli(['restore', 'web', '--repo', repo, '--point', id, '--to', q, '--format', 'qcow2']), `qcow2 ${i}`);
      const truth = join(dir, `truth${i}.raw`);
      await writeFile(truth, states[i]!);
      execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', q, truth]);
      assert.match(execFileSync('qemu-img', ['info', q]).toString(), /file format: qcow2/);
    }
    // Restores never write to backup files.
    assert.deepEqual(await snapshot(join(repo, 'jobs', 'web')), before);
    fails(await cli(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', join(dir, 'p0.raw')]), 5, 'LFB_ERR_TARGET_EXISTS');
    ok(await cli(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', join(dir, 'p0.raw'), '--force']), 'force');
    assert.ok((await readFile(join(dir, 'p0.raw'))).equals(states[2]!));
    fails(await cli(['restore', 'web', '--repo', repo, '--point', 'ffffffffffff', '--to', join(dir, 'n.raw')]), 3, 'LFB_ERR_POINT_NOT_FOUND');
    fails(await cli(['restore', 'web', '--repo', repo, '--point', 'latest', '--to', join(dir, 'n.raw'), '--disk', '7']), 3, 'LFB_ERR_DISK_NOT_FOUND');

    // The .vbm and the cache are derived: deleting them loses nothing.
    await rm(join(repo, 'jobs', 'web', 'web.vbm'));
    await rm(join(repo, 'cache'), { recursive: true });
    assert.equal(JSON.parse(ok(await cli(['points', 'web', '--repo', repo, '--json']), 'points without vbm')).length, 3);

    // A job folder copied into another repository is restorable there.
    const other = join(dir, 'other');
    ok(await cli(['repo', 'init', other, '--block-size', '4M']), 'init other');
    await cp(join(repo, 'jobs', 'web'), join(other, 'jobs', 'web'), { recursive: true });
    ok(await cli(['restore', 'web', '--repo', other, '--point', String(list[1]!['id']), '--to', join(dir, 'other.raw')]), 'restore from copy');
    assert.ok((await readFile(join(dir, 'other.raw'))).equals(states[1]!));
    ok(await cli(['backup', 'web', '--repo', other], { LIFEBOAT_NOW: '2026-06-05T08:00:00Z' }), 'backup into the copy');
  } finally {
    await cleanup();
  }
});

test('cli: damaged backup files are reported with a stable code, never restored as wrong bytes', async () => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(9);
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rand, 4 * MiB));
    ok(await cli(['repo', 'init', repo]), 'init');
    ok(await cli(['job', 'create', 'db', '--repo', repo, '--disk', disk]), 'job');
    ok(await cli(['backup', 'db', '--repo', repo], { LIFEBOAT_NOW: '2026-02-01T00:00:00Z' }), 'full');
    await writeAt(disk, randomBytes(rand, 10_000), 2 * MiB + 5);
    ok(await cli(['backup', 'db', '--repo', repo], { LIFEBOAT_NOW: '2026-02-02T00:00:00Z' }), 'incr');
    const jobDir = join(repo, 'jobs', 'db');
    const vib = (await readdir(jobDir)).find((n) => n.endsWith('.vib'))!;
    const vbk = (await readdir(jobDir)).find((n) => n.endsWith('.vbk'))!;

    // One flipped bit in the increment's only data block.
    const fh = await open(join(jobDir, vib), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, DATA_START + 100);
    b[0] = b[0]! ^ 0x10;
    await fh.write(b, 0, 1, DATA_START + 100);
    await fh.close();
    const out = join(dir, 'out.raw');
    const r = await cli(['restore', 'db', '--repo', repo, '--point', 'latest', '--to', out]);
    fails(r, 4, 'LFB_ERR_BLOCK_CORRUPT');
    assert.match(r.stderr, new RegExp(`${vib}: disk 0 block 2 \\(file offset ${DATA_START}\\)`));
    await assert.rejects(stat(out), 'no half-restored target is left');
    // The full is intact and still restores.
    const full = JSON.parse(ok(await cli(['points', 'db', '--repo', repo, '--json']), 'points'))[0].id as string;
    ok(await cli(['restore', 'db', '--repo', repo, '--point', full, '--to', out]), 'restore full');

    // A truncated increment: listed as unavailable, and "latest" refuses to fall back silently.
    await truncate(join(jobDir, vib), DATA_START + 50);
    const pts = await cli(['points', 'db', '--repo', repo, '--json']);
    assert.match(pts.stderr, /LFB_ERR_FILE_TRUNCATED/);
    const rows = JSON.parse(pts.stdout) as { available: boolean; code?: string }[];
    assert.deepEqual(
      rows.map((x) => x.available),
      [true, false],
    );
    fails(await cli(['restore', 'db', '--repo', repo, '--point', 'latest', '--to', join(dir, 'l.raw')]), 4, 'LFB_ERR_FILE_CORRUPT');
    // A full with a damaged root: the file is reported, its chain's points unavailable.
    const f2 = await open(join(jobDir, vbk), 'r+');
    const size = (await f2.stat()).size;
    await f2.write(Buffer.from('garbage!'), 0, 8, size - 20);
    await f2.close();
    const pts2 = await cli(['points', 'db', '--repo', repo, '--json']);
    assert.match(pts2.stderr, /metadata root .* fails its checksum/);
    fails(await cli(['restore', 'db', '--repo', repo, '--point', full, '--to', join(dir, 'f.raw')]), 4, 'LFB_ERR_FILE_CORRUPT');
    // The next backup still works: a new chain from a full read.
    const nb = ok(await cli(['backup', 'db', '--repo', repo], { LIFEBOAT_NOW: '2026-02-03T00:00:00Z' }), 'backup after damage');
    assert.match(nb, /^full /);

    // A repository or file of another format version.
    const cfg = JSON.parse(await readFile(join(repo, 'lifeboat.json'), 'utf8')) as { body: Record<string, unknown> };
    await writeCheckedJson(join(repo, 'lifeboat.json'), { ...cfg.body, version: 99 });
    fails(await cli(['points', 'db', '--repo', repo]), 1, 'LFB_ERR_REPO_VERSION');
    await writeFile(join(repo, 'lifeboat.json'), '{"sha256":"00","body":{}}');
    fails(await cli(['points', 'db', '--repo', repo]), 4, 'LFB_ERR_REPO_CORRUPT');
  } finally {
    await cleanup();
  }
});

test('cli: multi-disk job, vm config, schedule by weekday, forward retention', async () => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(3);
  try {
    const repo = join(dir, 'repo');
    const d0 = join(dir, 'sys.img');
    const d1 = join(dir, 'data.img');
    await writeFile(d0, randomBytes(rand, 3 * MiB + 4096));
    await writeFile(d1, Buffer.alloc(2 * MiB));
    await writeFile(
      join(dir, 'vm.json'),
      JSON.stringify({ name: 'erp01', vcpus: 4, memoryMiB: 8192, firmware: 'uefi', disks: [{ name: 'system', bus: 'scsi' }, { name: 'data' }] }),
    );
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ vcpus: 0 }));
    ok(await cli(['repo', 'init', repo]), 'init');
    fails(await cli(['job', 'create', 'erp', '--repo', repo, '--disk', d0, '--vm-config', join(dir, 'bad.json')]), 2, 'LFB_ERR_INVALID_ARGUMENT');
    fails(await cli(['job', 'create', 'erp', '--repo', repo, '--disk', d0, '--active-full', 'someday']), 2, 'LFB_ERR_INVALID_ARGUMENT');
    ok(
      await cli([
        'job',
        'create',
        'erp',
        '--repo',
        repo,
        '--disk',
        d0,
        '--disk',
        d1,
        '--retain-points',
        '2',
        '--active-full',
        'wed',
        '--vm-config',
        join(dir, 'vm.json'),
      ]),
      'job',
    );
    assert.equal(ok(await cli(['job', 'list', '--repo', repo]), 'list').trim(), 'erp');
    // 2026-06-01 is a Monday.
    const days = ['2026-06-01', '2026-06-02', '2026-06-03', '2026-06-03', '2026-06-04', '2026-06-05'];
    const kinds: string[] = [];
    for (const [i, day] of days.entries()) {
      await writeAt(d1, randomBytes(rand, 4096), i * 300_000);
      const out = ok(await cli(['backup', 'erp', '--repo', repo, '--json'], { LIFEBOAT_NOW: `${day}T${10 + i}:00:00Z` }), `backup ${day}`);
      kinds.push((JSON.parse(out) as { kind: string }).kind);
    }
    // First run full; Wednesday's first run an active full; its second run an increment.
    assert.deepEqual(kinds, ['full', 'increment', 'full', 'increment', 'increment', 'increment']);
    const pts = JSON.parse(ok(await cli(['points', 'erp', '--repo', repo, '--json']), 'points')) as { kind: string; createdAt: string }[];
    // Retain 2: the Mon–Tue chain was deleted once its newest point fell out.
    assert.equal(pts[0]!.createdAt.slice(0, 10), '2026-06-03');
    assert.equal(pts.length, 4, 'the latest chain stays whole');
    const outDir = join(dir, 'restored');
    await mkdir(outDir);
    fails(await cli(['restore', 'erp', '--repo', repo, '--point', 'latest', '--to', join(dir, 'one.raw')]), 2, 'LFB_ERR_INVALID_ARGUMENT');
    ok(await cli(['restore', 'erp', '--repo', repo, '--point', 'latest', '--to', outDir]), 'restore all disks');
    assert.ok((await readFile(join(outDir, 'system.raw'))).equals(await readFile(d0)));
    assert.ok((await readFile(join(outDir, 'data.raw'))).equals(await readFile(d1)));
    ok(await cli(['restore', 'erp', '--repo', repo, '--point', 'latest', '--disk', 'data', '--to', join(dir, 'data-only.raw')]), 'by name');
    assert.ok((await readFile(join(dir, 'data-only.raw'))).equals(await readFile(d1)));
    const vbm = JSON.parse(await readFile(join(repo, 'jobs', 'erp', 'erp.vbm'), 'utf8')) as { body: { chains: unknown[] } };
    assert.equal(vbm.body.chains.length, 1);
    const plan = JSON.parse(ok(await cli(['retention', 'plan', 'erp', '--repo', repo, '--json']), 'plan')) as {
      actions: unknown[];
      kept: { reason: string }[];
    };
    assert.deepEqual(plan.actions, []);
    assert.equal(plan.kept.length, 4);
  } finally {
    await cleanup();
  }
});

test('cli: one backup of a job at a time; a stale lock of a killed run is taken over', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(1), 2 * MiB));
    ok(await cli(['repo', 'init', repo]), 'init');
    ok(await cli(['job', 'create', 'j', '--repo', repo, '--disk', disk]), 'job');
    const holder = spawn('sleep', ['30']);
    try {
      await writeFile(join(repo, 'jobs', 'j', 'lock'), JSON.stringify({ pid: holder.pid, host: (await import('node:os')).hostname(), since: 'now' }));
      fails(await cli(['backup', 'j', '--repo', repo]), 11, 'LFB_ERR_JOB_LOCKED');
    } finally {
      holder.kill('SIGKILL');
    }
    await new Promise((r) => holder.on('close', r));
    ok(await cli(['backup', 'j', '--repo', repo]), 'backup after the holder died');
    // --wait: the second run waits for the first instead of failing.
    const shortHolder = spawn('sleep', ['1.5']);
    await writeFile(join(repo, 'jobs', 'j', 'lock'), JSON.stringify({ pid: shortHolder.pid, host: (await import('node:os')).hostname(), since: 'now' }));
    const t0 = Date.now();
    ok(await cli(['backup', 'j', '--repo', repo, '--wait']), 'backup --wait');
    assert.ok(Date.now() - t0 >= 1000, 'it waited for the holder');
  } finally {
    await cleanup();
  }
});

test('cli: a full disk is a clear error and leaves no half point', async () => {
  const { dir, cleanup } = await tempDir();
  const mnt = join(dir, 'small');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
  try {
    const repo = join(mnt, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(2), 8 * MiB));
    ok(await cli(['repo', 'init', repo, '--compression', 'none']), 'init');
    ok(await cli(['job', 'create', 'j', '--repo', repo, '--disk', disk]), 'job');
    fails(await cli(['backup', 'j', '--repo', repo]), 6, 'LFB_ERR_NO_SPACE');
    const files = await readdir(join(repo, 'jobs', 'j'));
    assert.deepEqual(
      files.filter((f) => /\.(vbk|vib|tmp)$/.test(f)),
      [],
      `left behind: ${files.join(', ')}`,
    );
  } finally {
    execFileSync('umount', [mnt]);
    await cleanup();
  }
});

/** Size and mtime of every file in a folder, to prove nothing was written. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of (await readdir(dir)).sort()) {
    const st = await stat(join(dir, n));
    out[n] = `${st.size}:${st.mtimeMs}`;
  }
  return out;
}
