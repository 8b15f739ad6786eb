/**
 * The archives of `lifeboat files` as src/files/tar-stream.ts writes them
 * again, without an appliance: an archive made the way the appliance's
 * tar-out makes one (GNU tar, `--xattrs`: pax) is renamed under a top entry
 * and its zero blocks become holes; GNU tar extracts it with the names,
 * modes, ns times, symlinks, hard links and holes of the source. Then one
 * member made from a stat and a stream of bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, lstat, mkdir, open, readFile, readlink, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { rewriteArchive, singleMemberArchive } from '../src/files/tar-stream.js';
import { MiB, tempDir } from './helpers.js';

async function extract(archive: Readable, into: string): Promise<void> {
  const file = `${into}.tar`;
  await pipeline(archive, createWriteStream(file));
  await mkdir(into, { recursive: true });
  execFileSync('tar', ['-x', '-f', file, '-C', into, '--numeric-owner', '--preserve-permissions']);
}

test('a tar-out archive renamed under its top entry, with holes for zero blocks and everything else kept', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const src = join(dir, 'src');
    await mkdir(join(src, 'sub', 'café'), { recursive: true });
    await writeFile(join(src, 'sub', 'café', 'naïve 文件.txt'), 'utf-8\n');
    await writeFile(join(src, 'small.txt'), 'small\n');
    await utimes(join(src, 'small.txt'), 1_600_000_000.123456, 1_600_000_000.123456);
    await link(join(src, 'small.txt'), join(src, 'hard'));
    await symlink('sub/café', join(src, 'link'));
    const long = `${'n'.repeat(120)}.txt`;
    await writeFile(join(src, long), 'long name\n');
    // 8 MiB with data at 1 MiB and a 5000-byte tail: holes everywhere else.
    await writeFile(join(src, 'sparse.bin'), '');
    await truncate(join(src, 'sparse.bin'), 8 * MiB);
    const fh = await open(join(src, 'sparse.bin'), 'r+');
    await fh.write(Buffer.alloc(4096, 7), 0, 4096, MiB);
    await fh.write(Buffer.alloc(5000, 9), 0, 5000, 8 * MiB - 5000);
    await fh.close();
    // Data with no whole zero block, larger than what is held in memory.
    const big = Buffer.alloc(40 * MiB);
    for (let i = 0; i < big.length; i += 4096) big[i] = 1;
    await writeFile(join(src, 'big.bin'), big);
    await writeFile(join(src, 'zeros.bin'), Buffer.alloc(MiB));
    const made = join(dir, 'made.tar');
    execFileSync('tar', ['-C', src, '--numeric-owner', '--xattrs', '-cf', made, '.']);

    const out = join(dir, 'out');
    await extract(rewriteArchive(createReadStream(made), 'top'), out);
    const t = join(out, 'top');
    assert.equal(await readFile(join(t, 'sub', 'café', 'naïve 文件.txt'), 'utf8'), 'utf-8\n');
    assert.equal(await readFile(join(t, long), 'utf8'), 'long name\n');
    assert.equal(await readlink(join(t, 'link')), 'sub/café');
    const [a, b] = [await lstat(join(t, 'small.txt'), { bigint: true }), await lstat(join(t, 'hard'), { bigint: true })];
    assert.equal(a.ino, b.ino, 'the hard link is a link');
    assert.equal(a.mtimeNs, (await lstat(join(src, 'small.txt'), { bigint: true })).mtimeNs, 'mtime in ns');
    const sp = await lstat(join(t, 'sparse.bin'));
    assert.equal(sp.size, 8 * MiB);
    assert.ok(sp.blocks * 512 <= 64 * 1024, `sparse.bin has holes (${sp.blocks} blocks)`);
    assert.deepEqual(await readFile(join(t, 'sparse.bin')), await readFile(join(src, 'sparse.bin')));
    assert.deepEqual(await readFile(join(t, 'big.bin')), big);
    const z = await lstat(join(t, 'zeros.bin'));
    assert.ok(z.size === MiB && z.blocks === 0, `a file of zeros is all hole (${z.blocks} blocks)`);

    // Names kept as tar-out gave them with the top `.`.
    const dotted = join(dir, 'dotted.tar');
    await pipeline(rewriteArchive(createReadStream(made), '.'), createWriteStream(dotted));
    const listed = execFileSync('tar', ['-tf', dotted], { encoding: 'utf8' });
    assert.ok(listed.split('\n').includes('./sub/café/naïve 文件.txt'), listed);
  } finally {
    await cleanup();
  }
});

test('one member from a stat and its bytes: mode, owners, ns mtime, holes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bytes = Buffer.alloc(3 * MiB);
    bytes.write('DATA', MiB);
    const st = { type: 'file', mode: 0o640, uid: 1000, gid: 1001, size: bytes.length, mtimeSec: 1_500_000_000, mtimeNsec: 5, rdev: 0 } as const;
    const out = join(dir, 'one');
    await extract(rewriteArchive(singleMemberArchive('f.bin', st, Readable.from([bytes.subarray(0, MiB), bytes.subarray(MiB)])), '.'), out);
    const got = await lstat(join(out, 'f.bin'), { bigint: true });
    assert.equal(got.mtimeNs, 1_500_000_000_000_000_005n);
    assert.equal(Number(got.mode & 0o7777n), 0o640);
    if (process.getuid?.() === 0) assert.deepEqual([got.uid, got.gid], [1000n, 1001n]);
    assert.ok(got.blocks * 512n <= 64n * 1024n, `holes kept (${got.blocks} blocks)`);
    assert.deepEqual(await readFile(join(out, 'f.bin')), bytes);

    const ln = join(dir, 'ln');
    const lst = { type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtimeSec: 1_500_000_000, mtimeNsec: 0, rdev: 0, target: 'x'.repeat(150) } as const;
    await extract(rewriteArchive(singleMemberArchive('l', lst, undefined), '.'), ln);
    assert.equal(await readlink(join(ln, 'l')), 'x'.repeat(150));
  } finally {
    await cleanup();
  }
});

test('an archive that ends inside a large member, at a 4 KiB boundary or in its padding, is refused as cut short', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const src = join(dir, 'src');
    await mkdir(src);
    // Both large enough to be looked at 4 KiB at a time; the second goes out sparse. Each ends in 1000 bytes, then padding.
    const dense = Buffer.alloc(64 * 1024 + 1000, 5);
    const holey = Buffer.concat([Buffer.alloc(64 * 1024), Buffer.alloc(1000, 5)]);
    for (const [name, data] of [
      ['dense.bin', dense],
      ['holey.bin', holey],
    ] as const) {
      await writeFile(join(src, name), data);
      const made = join(dir, `${name}.tar`);
      execFileSync('tar', ['-C', src, '--format=gnu', '-cf', made, name]);
      const whole = await readFile(made);
      const dataAt = 512;
      for (const cut of [dataAt + 16 * 1024, dataAt + 64 * 1024, dataAt + data.length, dataAt + data.length + 100]) {
        await assert.rejects(
          pipeline(rewriteArchive(Readable.from([whole.subarray(0, cut)]), 'top'), createWriteStream(join(dir, 'out.tar'))),
          (err: Error & { code?: string }) => err.code === 'LFB_ERR_TOOL_FAILED' && /ended in the middle of a member/.test(err.message),
          `${name} cut at ${cut}`,
        );
      }
    }
  } finally {
    await cleanup();
  }
});
