import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupFileReader } from '../src/repository/backup-file.js';
import { cli, randomBytes, rng, tempDir, writeAt } from './helpers.js';
import { open } from 'node:fs/promises';

async function flipByte(path: string, at: number, mask: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ mask;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

interface Report {
  problems: { file: string; code: string; offset?: number }[];
  blocks: number;
}

test(
  'verify: every flipped byte in stored blocks is reported with file and offset; restore refuses; a damaged root is a damaged file',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(21);
      const disk = join(dir, 'disk.img');
      await writeFile(disk, randomBytes(rand, 8 * 1024 * 1024));
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk])).code, 0);
      assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
      for (let k = 0; k < 6; k++) await writeAt(disk, randomBytes(rand, 100_000), Math.floor(rand() * 8_000_000));
      assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
      const clean = await cli(['verify', 'vm', '--repo', repo, '--all', '--json']);
      assert.equal(clean.code, 0, clean.stderr);
      assert.equal((JSON.parse(clean.stdout) as Report).problems.length, 0);

      // Flip one bit in each of 12 distinct stored blocks, spread over both files.
      const jobDir = join(repo, 'jobs', 'vm');
      const files = (await readdir(jobDir)).filter((n) => /\.(vbk|vib)$/.test(n)).sort();
      assert.equal(files.length, 2);
      const flipped = new Set<string>();
      for (const name of files) {
        const r = await BackupFileReader.open(join(jobDir, name));
        const t = r.root.tables[0]!;
        const slots = Array.from({ length: t.count }, (_, i) => i).filter((i) => !t.isZero(i));
        await r.close();
        for (let k = 0; k < 6; k++) {
          const slot = slots.splice(Math.floor(rand() * slots.length), 1)[0]!;
          const at = t.offset(slot) + Math.floor(rand() * t.storedLength(slot));
          await flipByte(join(jobDir, name), at, 1 << Math.floor(rand() * 8));
          flipped.add(`${name}@${t.offset(slot)}`);
        }
      }
      const bad = await cli(['verify', 'vm', '--repo', repo, '--all', '--json']);
      assert.equal(bad.code, 4, 'verify exits with the corruption code');
      const report = JSON.parse(bad.stdout) as Report;
      const found = new Set(report.problems.map((p) => `${p.file}@${p.offset}`));
      assert.deepEqual([...found].sort(), [...flipped].sort());
      assert.ok(report.problems.every((p) => p.code === 'LFB_ERR_BLOCK_CORRUPT'));
      const text = await cli(['verify', 'vm', '--repo', repo]);
      assert.equal(text.code, 4);
      assert.match(text.stdout, /CORRUPT .*\.vi?bk? at file offset \d+/);

      const target = join(dir, 'out.img');
      const rest = await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', target]);
      assert.equal(rest.code, 4, rest.stderr);
      assert.match(rest.stderr, /LFB_ERR_BLOCK_CORRUPT/);
      assert.equal(existsSync(target), false, 'no half-restored target');

      // The increment's committed root damaged: the file itself is reported.
      const inc = files[1]!;
      const r = await BackupFileReader.open(join(jobDir, inc));
      const rootAt = Number(r.slot.rootOffset);
      await r.close();
      await flipByte(join(jobDir, inc), rootAt + 10, 0x01);
      const rootBad = await cli(['verify', 'vm', '--repo', repo, '--all', '--json']);
      assert.equal(rootBad.code, 4);
      const rb = JSON.parse(rootBad.stdout) as Report;
      assert.ok(
        rb.problems.some((p) => p.file === inc && p.offset === undefined),
        JSON.stringify(rb.problems),
      );
    } finally {
      await cleanup();
    }
  },
);

test(
  'verify --repair: damaged blocks of the latest point are read again from the source into a new point; older damaged points stay marked and refused',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(22);
      const disk = join(dir, 'disk.img');
      const content = randomBytes(rand, 4 * 1024 * 1024);
      await writeFile(disk, content);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk])).code, 0);
      const ids: string[] = [];
      const backup = async (): Promise<void> => {
        const r = await cli(['backup', 'vm', '--repo', repo, '--json']);
        assert.equal(r.code, 0, r.stderr);
        ids.push((JSON.parse(r.stdout) as { pointId: string }).pointId);
      };
      await backup();
      // The increment rewrites block 1 only: the full's block 1 is damaged for the first point alone.
      const b1 = randomBytes(rand, 256 * 1024);
      b1.copy(content, 256 * 1024);
      await writeAt(disk, b1, 256 * 1024);
      await backup();
      const jobDir = join(repo, 'jobs', 'vm');
      const full = (await readdir(jobDir)).find((n) => n.endsWith('.vbk'))!;
      const r = await BackupFileReader.open(join(jobDir, full));
      const t = r.root.tables[0]!;
      const slotOf = (bi: number): number => Array.from({ length: t.count }, (_, i) => i).find((i) => t.blockIndex(i) === bi)!;
      const damage = [1, 5, 9].map((bi) => t.offset(slotOf(bi)) + 100);
      await r.close();
      for (const at of damage) await flipByte(join(jobDir, full), at, 0x10);

      // A plain check marks both points (the newest still reads blocks 5 and 9 from the full).
      const check = await cli(['verify', 'vm', '--repo', repo, '--all', '--json']);
      assert.equal(check.code, 4);
      const marked = (JSON.parse(check.stdout) as { damagedPoints: { id: string; damage: { blockCount: number } }[] }).damagedPoints;
      assert.deepEqual(Object.fromEntries(marked.map((m) => [m.id, m.damage.blockCount])), { [ids[0]!]: 3, [ids[1]!]: 2 });
      const listed = JSON.parse((await cli(['points', 'vm', '--repo', repo, '--json'])).stdout) as { id: string; available: boolean; code?: string }[];
      assert.deepEqual(
        listed.map((p) => [p.available, p.code]),
        [
          [false, 'LFB_ERR_BLOCK_CORRUPT'],
          [false, 'LFB_ERR_BLOCK_CORRUPT'],
        ],
      );
      const refused = await cli(['restore', 'vm', '--repo', repo, '--point', ids[1]!, '--to', join(dir, 'x.img')]);
      assert.equal(refused.code, 4);
      assert.match(refused.stderr, /verify --repair/);

      const rep = await cli(['verify', 'vm', '--repo', repo, '--repair']);
      assert.equal(rep.code, 0, rep.stdout + rep.stderr);
      assert.match(rep.stdout, /repair: new increment \w+ \(repair: 2 damaged block\(s\).*it verifies whole/);
      const after = JSON.parse((await cli(['points', 'vm', '--repo', repo, '--json'])).stdout) as { id: string; available: boolean }[];
      assert.equal(after.length, 3);
      assert.deepEqual(
        after.map((p) => p.available),
        [false, false, true],
      );
      const out = join(dir, 'out.img');
      assert.equal((await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', out])).code, 0);
      const { readFile } = await import('node:fs/promises');
      assert.ok((await readFile(out)).equals(content), 'the repaired point is the source, bit for bit');
      // The next run builds on the repaired point as usual, and a full check still names the two old points.
      await backup();
      const again = await cli(['verify', 'vm', '--repo', repo, '--all', '--json']);
      assert.equal(again.code, 4);
      assert.deepEqual((JSON.parse(again.stdout) as { damagedPoints: { id: string }[] }).damagedPoints.map((d) => d.id).sort(), [ids[0]!, ids[1]!].sort());
    } finally {
      await cleanup();
    }
  },
);
