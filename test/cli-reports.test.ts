// What the CLI reports (issue 13 items 8 and 12): how changes were found, --json
// everywhere, stored sizes, repository usage, rates. No root, no QEMU, no ports.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, MiB, randomBytes, rng, tempDir } from './helpers.js';
import { formatEta, formatRate, ProgressMeter } from '../src/cli/progress.js';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

describe('CLI reports', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let repo: string;
  let raw: string;
  const rand = rng(13);

  before(async () => {
    ({ dir, cleanup } = await tempDir('lifeboat-reports-'));
    repo = join(dir, 'repo');
    raw = join(dir, 'raw.img');
    await writeFile(raw, randomBytes(rand, 2 * MiB));
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', raw])).code, 0);
  });
  after(async () => cleanup());

  it('refuses --cbt at job create and job set on a source that cannot track changes', async () => {
    const created = await cli(['job', 'create', 'rawcbt', '--repo', repo, '--disk', raw, '--cbt']);
    assert.equal(created.code, 2, created.stderr);
    assert.match(created.stderr, /LFB_ERR_CBT_UNSUPPORTED/);
    assert.match(created.stderr, /raw/);
    const listed = await cli(['job', 'list', '--repo', repo]);
    assert.doesNotMatch(listed.stdout, /rawcbt/);
    const set = await cli(['job', 'set', 'vm', '--repo', repo, '--cbt']);
    assert.equal(set.code, 2, set.stderr);
    assert.match(set.stderr, /LFB_ERR_CBT_UNSUPPORTED/);
    const nbd = await cli(['job', 'create', 'nbdcbt', '--repo', repo, '--disk', 'nbd://127.0.0.1:1/x', '--cbt']);
    assert.equal(nbd.code, 2, nbd.stderr);
    assert.match(nbd.stderr, /NBD export.*--qmp.*LFB_ERR_CBT_UNSUPPORTED/);
  });

  it('backup and points say how changes were found and why CBT fell back', async () => {
    // Created as a qcow2 image (CBT accepted), then replaced by raw data: the run falls back and says why.
    const img = join(dir, 'was-qcow2.img');
    await writeFile(img, Buffer.concat([QCOW2_MAGIC, Buffer.alloc(MiB - 4)]));
    const created = await cli(['job', 'create', 'cbtjob', '--repo', repo, '--disk', img, '--cbt']);
    assert.equal(created.code, 0, created.stderr);
    await writeFile(img, randomBytes(rand, MiB));
    const first = await cli(['backup', 'cbtjob', '--repo', repo, '--json']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal((JSON.parse(first.stdout) as { changes: { method: string }[] }).changes[0]!.method, 'full');
    const second = await cli(['backup', 'cbtjob', '--repo', repo]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /changes found by hash \(CBT needs a qcow2 image/);
    const listed = await cli(['points', 'cbtjob', '--repo', repo, '--json']);
    const rows = JSON.parse(listed.stdout) as { changes: { method: string; note?: string }[] }[];
    assert.deepEqual(
      rows.map((r) => r.changes[0]!.method),
      ['full', 'hash'],
    );
    assert.match(rows[1]!.changes[0]!.note ?? '', /qcow2/);
    const human = await cli(['points', 'cbtjob', '--repo', repo]);
    assert.match(human.stdout, /CHANGES/);
    assert.match(human.stdout, /hash: CBT needs a qcow2 image/);
  });

  it('points shows stored size beside disk size; repo info shows usage per job and free space', async () => {
    const run = await cli(['backup', 'vm', '--repo', repo, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const rows = JSON.parse((await cli(['points', 'vm', '--repo', repo, '--json'])).stdout) as { file: string; storedBytes: number }[];
    assert.equal(rows.length, 1);
    const fileSize = (await stat(join(repo, 'jobs', 'vm', rows[0]!.file)).catch(async () => stat(join(repo, 'vm', rows[0]!.file)))).size;
    assert.equal(rows[0]!.storedBytes, fileSize);
    const human = await cli(['points', 'vm', '--repo', repo]);
    assert.match(human.stdout, /DISK\s+STORED/);

    const info = await cli(['repo', 'info', '--repo', repo, '--json']);
    assert.equal(info.code, 0, info.stderr);
    const doc = JSON.parse(info.stdout) as {
      jobs: { name: string; points: number; files: number; bytes: number }[];
      freeBytes: number;
      totalBytes: number;
    };
    const vm = doc.jobs.find((j) => j.name === 'vm')!;
    assert.deepEqual({ points: vm.points, files: vm.files, bytes: vm.bytes }, { points: 1, files: 1, bytes: fileSize });
    assert.equal(doc.jobs.find((j) => j.name === 'cbtjob')!.points, 2);
    const fs = await statfs(repo);
    assert.ok(Math.abs(doc.freeBytes - fs.bavail * fs.bsize) < 1024 * MiB, `free ${doc.freeBytes}`);
    assert.equal(doc.totalBytes, fs.blocks * fs.bsize);
    const text = await cli(['repo', 'info', '--repo', repo]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /vm\s+1 point/);
    assert.match(text.stdout, /free/);
  });

  it('an increment without CBT says its changes were found by hash, and the points table keeps its columns apart', async () => {
    assert.equal((await cli(['job', 'create', 'plain', '--repo', repo, '--disk', raw, '--method', 'forward', '--retain-points', '5'])).code, 0);
    for (let i = 0; i < 2; i++) assert.equal((await cli(['backup', 'plain', '--repo', repo])).code, 0);
    const rows = JSON.parse((await cli(['points', 'plain', '--repo', repo, '--json'])).stdout) as { kind: string; changes: { method: string }[] }[];
    assert.deepEqual(
      rows.map((r) => `${r.kind} ${r.changes[0]!.method}`),
      ['full full', 'increment hash'],
    );
    const human = (await cli(['points', 'plain', '--repo', repo])).stdout;
    assert.doesNotMatch(human, /\.(vbk|vib)(full|hash|cbt)/, 'the FILE and CHANGES columns run together');
    assert.match(human, /\.vib\s+hash/);
  });

  it('job list and restore answer in JSON; instant commands accept --json', async () => {
    const jobs = JSON.parse((await cli(['job', 'list', '--repo', repo, '--json'])).stdout) as { name: string; points: number }[];
    assert.deepEqual(jobs.map((j) => j.name).sort(), ['cbtjob', 'plain', 'vm']);
    const target = join(dir, 'restored.img');
    const r = await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', target, '--format', 'raw', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { point: { id: string }; targets: { path: string; bytesWritten: number }[] };
    assert.equal(doc.targets[0]!.path, target);
    assert.equal((await stat(target)).size, 2 * MiB);
    for (const args of [
      ['instant', 'stop', 's1'],
      ['instant', 'migrate', 's1'],
      ['instant', 'add-disk', 's1', '--size', '1M'],
    ]) {
      const res = await cli([...args, '--repo', repo, '--json']);
      // No server runs: the flag is accepted, the command fails for that reason only.
      assert.match(res.stderr, /LFB_ERR_SERVER_NOT_RUNNING/, `${args.join(' ')}: ${res.stderr}`);
    }
  });

  it('repo init answers in JSON', async () => {
    const other = join(dir, 'other-repo');
    const r = await cli(['repo', 'init', other, '--block-size', '256K', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { repo: other, blockSize: 256 * 1024, compression: 'zstd:1' });
  });

  it('formats rates and ETAs for progress lines', () => {
    assert.equal(formatRate(0), '0 B/s');
    assert.equal(formatRate(1536), '1.54 KB/s');
    assert.equal(formatRate(123.456e6), '123 MB/s');
    assert.equal(formatRate(12.345e6), '12.3 MB/s');
    assert.equal(formatRate(2.5e9), '2.50 GB/s');
    assert.equal(formatEta(5), '5 s');
    assert.equal(formatEta(125), '2 min 5 s');
    assert.equal(formatEta(3 * 3600 + 60), '3 h 1 min');
    assert.equal(formatEta(Infinity), '?');
  });

  it('rates a transfer by what it moved since its first progress line (a resumed copy too)', () => {
    let now = 100;
    const meter = new ProgressMeter(() => now);
    assert.equal(meter.line(20e6, 100e6), '19.1 MiB / 95.4 MiB (20%)');
    now += 2;
    assert.equal(meter.line(60e6, 100e6), '57.2 MiB / 95.4 MiB (60%), 20.0 MB/s, ETA 2 s');
    const blocks = new ProgressMeter(() => now);
    assert.equal(blocks.eta(0, 1000), undefined);
    now += 10;
    assert.equal(blocks.eta(100, 1000), '1 min 30 s');
  });
});
