import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, readlink, stat, truncate, utimes, writeFile, chmod, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, MiB, cli, randomBytes, rng, tempDir } from './helpers.js';
import { startServer, type Server } from './server-helpers.js';

// As in test/files: TCG, and the cached appliance where libguestfs keeps it whatever TMPDIR is.
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';

const MTIME = 1_500_000_000;
let tmp: { dir: string; cleanup: () => Promise<void> };
let repo = '';
let big: Buffer = Buffer.alloc(0);
let server: Server | undefined;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** QEMU processes this test started (the server's appliance, or a CLI's): they carry its TMPDIR. */
function ourQemus(): string[] {
  const out: string[] = [];
  for (const pid of (spawnSync('ls', ['/proc'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((x) => /^\d+$/.test(x))) {
    const env = spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'utf8' }).stdout ?? '';
    const cmd = (spawnSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).stdout ?? '').replace(/\0/g, ' ');
    if (env.split('\0').includes(`TMPDIR=${tmp.dir}`) && /qemu-system/.test(cmd.split(' ')[0] ?? '')) out.push(`${pid} ${cmd.slice(0, 80)}`);
  }
  return out;
}

/** `lifeboat …` with its standard output as bytes (a tar). */
function cliBytes(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => chunks.push(d));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout: Buffer.concat(chunks), stderr }));
  });
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
}

before(async () => {
  tmp = await tempDir('lifeboat-files-hand-off-');
  process.env['TMPDIR'] = tmp.dir;
  // An ext4 file system on a whole disk, made without root or an appliance (mkfs.ext4 -d).
  const src = join(tmp.dir, 'src');
  await mkdir(join(src, 'data', 'sub'), { recursive: true });
  big = randomBytes(rng(17), 24 * MiB);
  await writeFile(join(src, 'data', 'big.bin'), big);
  await writeFile(join(src, 'data', 'sub', 'note.txt'), 'a note\n');
  await writeFile(join(src, 'data', 'secret.txt'), 's3cret\n');
  await chmod(join(src, 'data', 'secret.txt'), 0o640);
  await utimes(join(src, 'data', 'secret.txt'), MTIME, MTIME);
  await symlink('sub/note.txt', join(src, 'data', 'link'));
  await writeFile(join(src, 'data', 'sparse'), 'DATA');
  await truncate(join(src, 'data', 'sparse'), 4 * MiB);
  const disk = join(tmp.dir, 'disk.img');
  execFileSync('truncate', ['-s', '96M', disk]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'handoff', '-d', src, disk], { timeout: 60_000 });
  repo = join(tmp.dir, 'repo');
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', 'vm', '--repo', repo, '--disk', disk],
    ['backup', 'vm', '--repo', repo],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
});

after(async () => {
  if (server && server.proc.exitCode === null) {
    server.proc.kill('SIGTERM');
    await server.exited;
  }
  await tmp.cleanup();
});

test(
  'files ls|get|find while serve runs use its file session: one appliance, the second call fast, the same output as without a server',
  { timeout: 600_000 },
  async () => {
    // Without a server: the CLI boots an appliance of its own (the output the server's answers must match).
    const local = await cli(['files', 'ls', 'vm', '--repo', repo, '--point', 'latest', '/data', '--json']);
    assert.equal(local.code, 0, local.stderr);
    assert.doesNotMatch(local.stderr, /a server runs/);

    server = await startServer(repo, ['--no-portmap']);
    const [first, firstMs] = await timed(() => cli(['files', 'ls', 'vm', '--repo', repo, '--point', 'latest']));
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /a server runs for the repository/);
    assert.match(first.stdout, /^point \w+:\n {2}disk0 +disk +ext4 .* handoff +mounted$/m);
    const [second, secondMs] = await timed(() => cli(['files', 'ls', 'vm', '--repo', repo, '--point', 'latest', '/data', '--json']));
    assert.equal(second.code, 0, second.stderr);
    process.stderr.write(`files ls through the server: first ${firstMs.toFixed(0)} ms (appliance boot), second ${secondMs.toFixed(0)} ms\n`);
    assert.equal(second.stdout, local.stdout, 'the same listing as without a server');
    assert.ok(secondMs < firstMs / 4, `the second ls reuses the session (${secondMs.toFixed(0)} ms vs ${firstMs.toFixed(0)} ms)`);
    assert.equal(ourQemus().length, 1, `one appliance: ${ourQemus().join('; ')}`);
    const browses = await readdir(join(tmp.dir, 'lifeboat-files'));
    assert.equal(browses.length, 1);
    const record = JSON.parse(await readFile(join(tmp.dir, 'lifeboat-files', browses[0]!, 'record.json'), 'utf8')) as { ownerPid: number };
    assert.equal(record.ownerPid, server.proc.pid, "the browse is the server's");

    // get --to: a file, then the folder (modes, times, symlink, holes), extracted by the CLI from the server's tar.
    const one = join(tmp.dir, 'big.out');
    const g = await cli(['files', 'get', 'vm', '/data/big.bin', '--repo', repo, '--point', 'latest', '--to', one]);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /^copied disk0:\/data\/big\.bin \(file\) of point \w+ → .*big\.out$/m);
    assert.equal(sha(await readFile(one)), sha(big));
    const dir = join(tmp.dir, 'data.out');
    const gd = await cli(['files', 'get', 'vm', 'disk0:/data', '--repo', repo, '--point', 'latest', '--to', dir, '--json']);
    assert.equal(gd.code, 0, `${gd.stderr}\nserver: ${server.log().slice(-3000)}`);
    assert.deepEqual(JSON.parse(gd.stdout), { point: JSON.parse(local.stdout).point, source: 'disk0:/data', type: 'directory', to: dir });
    assert.equal(sha(await readFile(join(dir, 'big.bin'))), sha(big));
    const secret = await lstat(join(dir, 'secret.txt'));
    assert.deepEqual([secret.mode & 0o7777, secret.mtimeMs], [0o640, MTIME * 1000]);
    assert.equal(await readlink(join(dir, 'link')), 'sub/note.txt');
    assert.equal(await readFile(join(dir, 'sub', 'note.txt'), 'utf8'), 'a note\n');
    const sparse = await stat(join(dir, 'sparse'));
    assert.equal(sparse.size, 4 * MiB);
    assert.ok(sparse.blocks * 512 <= 64 * 1024, `the sparse file stays sparse (${sparse.blocks} blocks)`);
    assert.deepEqual(
      (await readdir(tmp.dir)).filter((n) => n.startsWith('.lifeboat-get-')),
      [],
      'no extraction folder left',
    );
    // The session's export decodes with the server's pool and caches: the blocks the appliance read are in its disk cache.
    let caches = '';
    for (let i = 0; i < 40 && !/disk cache: .*\([1-9]\d* blocks?\)/.test(caches); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 250));
      const list = await cli(['instant', 'list', '--repo', repo]);
      assert.equal(list.code, 0, list.stderr);
      caches = list.stdout;
    }
    assert.match(caches, /disk cache: .*\([1-9]\d* blocks?\)/, "the appliance's reads went through the server's disk cache");
    // An existing target is refused with the local run's code and exit status.
    const exists = await cli(['files', 'get', 'vm', '/data/big.bin', '--repo', repo, '--point', 'latest', '--to', one]);
    assert.equal(exists.code, 5, exists.stderr);
    assert.match(exists.stderr, /LFB_ERR_TARGET_EXISTS/);

    // --tar to standard output.
    const t = await cliBytes(['files', 'get', 'vm', '/data/sub', '--repo', repo, '--point', 'latest', '--tar']);
    assert.equal(t.code, 0, t.stderr);
    const untar = join(tmp.dir, 'untar');
    await mkdir(untar);
    execFileSync('tar', ['-x', '-f', '-', '-C', untar], { input: t.stdout });
    assert.equal(await readFile(join(untar, 'sub', 'note.txt'), 'utf8'), 'a note\n');

    const f = await cli(['files', 'find', 'vm', '--repo', repo, '--point', 'latest', '--name', '*.txt']);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(f.stdout.trim().split('\n'), ['disk0:/data/secret.txt', 'disk0:/data/sub/note.txt']);
    const missing = await cli(['files', 'ls', 'vm', '--repo', repo, '--point', 'latest', '/nope']);
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, /LFB_ERR_FILE_NOT_FOUND/);
    assert.equal(ourQemus().length, 1, 'still one appliance');

    // The server stops: its session's appliance ends with it.
    server.proc.kill('SIGTERM');
    await server.exited;
    for (let i = 0; i < 60 && ourQemus().length > 0; i++) await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(ourQemus(), [], 'no appliance left');
  },
);
