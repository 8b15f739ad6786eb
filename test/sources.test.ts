import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, backupJson as backup, cli, randomBytes, rng, tempDir, writeRawDisk } from './helpers.js';
import { nbdkit, nbdkitOnFreePort } from './nbdkit.js';

/** How the point's changes were found, from its file's root (as `points --json` shows the file). */
async function changesOf(repo: string, job: string, pointId: string): Promise<{ method: string; note?: string; bitmap?: string }> {
  const { scanJob } = await import('../src/repository/index.js');
  const state = await scanJob(join(repo, 'jobs', job));
  for (const c of state.chains) for (const f of [c.full, ...c.increments]) if (f.root.pointId === pointId) return f.root.meta.changes![0]!;
  throw new Error(`no point ${pointId}`);
}

const qemuIo = (img: string, ...cmds: string[]): void => {
  execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), img], { stdio: 'ignore' });
};
const bitmaps = (img: string): string[] =>
  (
    (JSON.parse(execFileSync('qemu-img', ['info', '--output=json', img]).toString()) as { 'format-specific': { data: { bitmaps?: { name: string }[] } } })[
      'format-specific'
    ].data.bitmaps ?? []
  ).map((b) => b.name);

async function restoresEqual(repo: string, job: string, dir: string, image: string, name: string): Promise<void> {
  const out = join(dir, name);
  const r = await cli(['restore', job, '--repo', repo, '--point', 'latest', '--to', out]);
  assert.equal(r.code, 0, r.stderr);
  // Restored in the source's format by default; qemu-img compares the guest-visible bytes.
  const fmt = (JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out]).toString()) as { format: string }).format;
  const src = (JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image]).toString()) as { format: string }).format;
  assert.equal(fmt, src, 'restored in the source format');
  execFileSync('qemu-img', ['compare', '-q', image, out]);
}

test(
  'qcow2 with CBT: increments read only the dirty blocks; a cleared bitmap or a replaced image falls back to hashes, always exact',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const img = join(dir, 'vm.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
      qemuIo(img, 'write -P 0x11 0 8M', 'write -P 0x22 20M 3M', 'write -P 0x5a 50M 1M');
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', img, '--cbt'])).code, 0);
      const full = await backup(repo, 'vm');
      assert.equal(full.kind, 'full');
      assert.equal((await changesOf(repo, 'vm', full.pointId)).method, 'full');
      assert.equal(bitmaps(img).length, 2, 'a bitmap and its check twin');

      // Guest-style writes in three 1 MiB blocks (one write spans two of them).
      qemuIo(img, 'write -P 0x33 4M 100k', 'write -P 0x44 40M 4k', 'write -P 0x66 59M 1200k');
      const inc = await backup(repo, 'vm');
      assert.equal((await changesOf(repo, 'vm', inc.pointId)).method, 'cbt');
      assert.equal(inc.bytesRead, 4 * MiB, 'only the four dirty blocks are read');
      assert.equal(inc.blocksStored, 4);
      assert.equal(inc.blocksUnchanged, 60);
      await restoresEqual(repo, 'vm', dir, img, 'r1.qcow2');
      // The newest point's pair, and the previous point's until the next run retires it.
      assert.deepEqual(bitmaps(img).filter((b) => b.includes(inc.pointId)).length, 2);
      assert.ok(bitmaps(img).length <= 4, bitmaps(img).join(', '));

      // A write, the bitmap cleared, another write: the twin disagrees, so hashes.
      qemuIo(img, 'write -P 0x77 10M 64k');
      execFileSync('qemu-img', ['bitmap', '--clear', img, bitmaps(img).find((b) => b.endsWith(inc.pointId))!]);
      qemuIo(img, 'write -P 0x78 30M 64k');
      const cleared = await backup(repo, 'vm');
      const c1 = await changesOf(repo, 'vm', cleared.pointId);
      assert.equal(c1.method, 'hash');
      assert.match(c1.note ?? '', /disagree/);
      assert.equal(cleared.blocksStored, 2, 'both writes found');
      await restoresEqual(repo, 'vm', dir, img, 'r2.qcow2');

      // Back to CBT on the next run.
      qemuIo(img, 'write -P 0x79 12M 64k');
      const again = await backup(repo, 'vm');
      assert.equal((await changesOf(repo, 'vm', again.pointId)).method, 'cbt');
      assert.equal(again.bytesRead, MiB);
      assert.ok(
        bitmaps(img).every((b) => b.includes(cleared.pointId) || b.includes(again.pointId)),
        `older bitmaps retired: ${bitmaps(img).join(', ')}`,
      );

      // The image replaced by a copy with the same bytes and no bitmaps, then written.
      const copy = join(dir, 'copy.qcow2');
      execFileSync('qemu-img', ['convert', '-q', '-O', 'qcow2', img, copy]);
      execFileSync('mv', [copy, img]);
      qemuIo(img, 'write -P 0x7a 33M 64k');
      const replaced = await backup(repo, 'vm');
      const c2 = await changesOf(repo, 'vm', replaced.pointId);
      assert.equal(c2.method, 'hash');
      assert.match(c2.note ?? '', /missing/);
      assert.equal(replaced.blocksStored, 1);
      await restoresEqual(repo, 'vm', dir, img, 'r3.qcow2');
      const pts = JSON.parse((await cli(['points', 'vm', '--repo', repo, '--json'])).stdout) as { vm: { disks: { format: string }[] } }[];
      assert.ok(
        pts.every((p) => p.vm.disks[0]!.format === 'qcow2'),
        'points record the source format',
      );
    } finally {
      await cleanup();
    }
  },
);

test('vmdk and vhdx sources (qemu-img convert of a raw disk) back up and restore to the same format', { timeout: 5 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const rand = rng(61);
    const raw = join(dir, 'disk.raw');
    const content = await writeRawDisk(raw, rand, 24, [0, 5, 11, 17], 3 * MiB + 12345);
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
    for (const fmt of ['vmdk', 'vhdx']) {
      const img = join(dir, `disk.${fmt}`);
      execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', fmt, raw, img]);
      assert.equal((await cli(['job', 'create', fmt, '--repo', repo, '--disk', img])).code, 0);
      const full = await backup(repo, fmt);
      assert.ok(full.bytesRead >= content.length);
      // Change it through qemu-io (the format's own writer) and take an increment.
      execFileSync('qemu-io', ['-f', fmt, '-c', 'write -P 0x42 7M 300k', img], { stdio: 'ignore' });
      const inc = await backup(repo, fmt);
      assert.equal(inc.blocksStored, 2);
      await restoresEqual(repo, fmt, dir, img, `out.${fmt}`);
    }
    // A qcow2 overlay on a backing file reads as the guest sees it: base bytes where the overlay has none.
    const base = join(dir, 'base.qcow2');
    const top = join(dir, 'top.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, base]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    qemuIo(top, 'write -P 0x24 1M 64k');
    assert.equal((await cli(['job', 'create', 'chain', '--repo', repo, '--disk', top])).code, 0);
    await backup(repo, 'chain');
    const flat = join(dir, 'chain.raw');
    assert.equal((await cli(['restore', 'chain', '--repo', repo, '--point', 'latest', '--to', flat, '--format', 'raw'])).code, 0);
    const expected = Buffer.from(content);
    expected.fill(0x24, MiB, MiB + 65536);
    assert.ok((await readFile(flat)).equals(expected), 'the backing chain as the guest sees it');
  } finally {
    await cleanup();
  }
});

test(
  'nbd:// source: backed up through the NBD client (holes skipped); a dropped connection fails the run clearly with no half point; the next run succeeds',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const procs: ChildProcess[] = [];
    try {
      const rand = rng(62);
      const raw = join(dir, 'disk.raw');
      const content = Buffer.alloc(48 * MiB);
      for (let at = 0; at < 48; at += 6) randomBytes(rand, 2 * MiB).copy(content, at * MiB);
      await writeFile(raw, content);
      execFileSync('truncate', ['-s', String(content.length), raw]);
      const first = await nbdkitOnFreePort(['file', `file=${raw}`]);
      const port = first.port;
      procs.push(first.proc);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      const uri = `nbd://127.0.0.1:${port}`;
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', uri])).code, 0);
      const full = await backup(repo, 'vm');
      assert.equal(full.blocksStored, 16);
      const out = join(dir, 'out.raw');
      assert.equal((await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', out])).code, 0);
      assert.ok((await readFile(out)).equals(content));

      // The server goes away in the middle of the next run.
      procs.pop()!.kill('SIGKILL');
      const slow = await nbdkit(['--filter=delay', 'file', `file=${raw}`, 'delay-read=100ms'], port);
      procs.push(slow);
      content.fill(0x5c, 30 * MiB, 31 * MiB);
      await writeFile(raw, content);
      const run = cli(['backup', 'vm', '--repo', repo]);
      // Drop the server once the run is writing its new file (a fixed delay killed it before a slow start connected).
      for (let i = 0; i < 600 && !(await readdir(join(repo, 'jobs', 'vm'))).some((n) => n.endsWith('.tmp')); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      slow.kill('SIGKILL');
      const failed = await run;
      assert.equal(failed.code, 1, failed.stderr);
      assert.match(failed.stderr, /LFB_ERR_DISK_READ/);
      assert.match(failed.stderr, /connection (lost|closed)/);
      const files = (await readdir(join(repo, 'jobs', 'vm'))).filter((n) => /\.(vbk|vib|vrb)$/.test(n));
      assert.equal(files.length, 1, 'no half point');

      procs.push(await nbdkit(['file', `file=${raw}`], port));
      const next = await backup(repo, 'vm');
      assert.equal(next.kind, 'increment');
      assert.equal(next.blocksStored, 1);
      assert.equal((await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', join(dir, 'out2.raw')])).code, 0);
      assert.ok((await readFile(join(dir, 'out2.raw'))).equals(content));
    } finally {
      for (const p of procs) p.kill('SIGKILL');
      await cleanup();
    }
  },
);
