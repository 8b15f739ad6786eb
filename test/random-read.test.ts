import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { cli, randomBytes, rng, serviceAt, tempDir } from './helpers.js';

test(
  'random small reads of a point (frames decoded alone, boundaries remembered) return the exact bytes, first time and again',
  { timeout: 2 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const pool = new BlockWorkerPool(2);
    try {
      const rand = rng(81);
      const disk = join(dir, 'disk.img');
      const content = randomBytes(rand, 6 * 1024 * 1024 + 12345);
      await writeFile(disk, content);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk])).code, 0);
      assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
      const opened = await serviceAt('2026-01-01T00:00:00Z').openPointDisk(repo, 'vm', 'latest', '0', pool);
      try {
        for (let k = 0; k < 400; k++) {
          // Jump around so no read looks sequential; sizes up to 128 KiB, any alignment.
          const len = 1 + Math.floor(rand() * 128 * 1024);
          const off = Math.floor(rand() * (content.length - len));
          const got = await opened.disk.read(off, len);
          assert.ok(got.equals(content.subarray(off, off + len)), `read ${off}+${len}`);
        }
      } finally {
        await opened.disk.close();
      }
    } finally {
      await pool.close();
      await cleanup();
    }
  },
);
