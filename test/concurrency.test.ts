import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, randomBytes, rng, tempDir, writeAt } from './helpers.js';

const MiB = 1 << 20;

/**
 * Restores run while backups of the same job write increments and merge them
 * into the full (forever forward, 2 points): each restore either returns
 * exactly the bytes of the point it names, or fails cleanly — never wrong bytes.
 */
test('restores during backups and merges are exact or fail cleanly', async () => {
  const { dir, cleanup } = await tempDir();
  const rand = rng(31);
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rand, 12 * MiB));
    assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
    assert.equal((await cli(['job', 'create', 'j', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '2'])).code, 0);
    const contents = new Map<string, Buffer>();
    const backupOnce = async (): Promise<void> => {
      const r = await cli(['backup', 'j', '--repo', repo, '--json']);
      assert.equal(r.code, 0, r.stderr);
      contents.set((JSON.parse(r.stdout) as { pointId: string }).pointId, await readFile(disk));
    };
    await backupOnce();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 12; i++) {
        for (let k = 0; k < 4; k++) await writeAt(disk, randomBytes(rand, 200_000), Math.floor(rand() * 11 * MiB));
        await backupOnce();
      }
      writing = false;
    })();
    const restored: { id: string; file: string }[] = [];
    let failures = 0;
    for (let n = 0; writing; n++) {
      const out = join(dir, `r${n}.raw`);
      const r = await cli(['restore', 'j', '--repo', repo, '--point', 'latest', '--to', out]);
      if (r.code === 0) restored.push({ id: /restored point ([0-9a-f]{12})/.exec(r.stdout)![1]!, file: out });
      else {
        failures += 1;
        assert.match(r.stderr, /\[LFB_ERR_[A-Z_]+\]/, 'a failure names its code');
      }
    }
    await writer;
    assert.ok(restored.length >= 3, `only ${restored.length} restores completed (${failures} failed)`);
    for (const r of restored) assert.ok((await readFile(r.file)).equals(contents.get(r.id)!), `restore of ${r.id} differs`);
  } finally {
    await cleanup();
  }
});
