import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, MiB, randomBytes, rng, tempDir, type CliResult } from './helpers.js';

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

async function restored(dir: string, repo: string, point: string): Promise<Buffer> {
  const to = join(dir, `restore-${point}.raw`);
  ok(await cli(['restore', 'vm', '--repo', repo, '--point', point, '--to', to, '--format', 'raw', '--force']), `restore ${point}`);
  const bytes = await readFile(to);
  await rm(to);
  return bytes;
}

async function pointIds(repo: string): Promise<string[]> {
  return (JSON.parse(ok(await cli(['points', 'vm', '--repo', repo, '--json']), 'points')) as { id: string }[]).map((p) => p.id);
}

/** A repository with one job on `disk` (`job create` options: `jobArgs`) and one point of `content`. */
async function firstPoint(dir: string, disk: string, content: Buffer, jobArgs: string[] = []): Promise<string> {
  const repo = join(dir, 'repo');
  await writeFile(disk, content);
  ok(await cli(['repo', 'init', repo, '--block-size', '512K', '--compression', 'lz4']), 'init');
  ok(await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--retain-points', '3', ...jobArgs]), 'job create');
  ok(await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: '2026-06-01T08:00:00Z' }), 'first backup');
  return repo;
}

test('source change: a source that lost more than half its size fails before writing anything, unless --accept-source-change', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const disk = join(dir, 'vm.img');
    const content = randomBytes(rng(13), 8 * MiB);
    const repo = await firstPoint(dir, disk, content);
    const [first] = await pointIds(repo);
    const jobDir = join(repo, 'jobs', 'vm');
    const filesBefore = (await readdir(jobDir)).sort();

    // The image replaced by a 5-byte file: a few such runs would push the good point out of retention.
    await writeFile(disk, 'oops\n');
    for (let run = 0; run < 3; run++) {
      const r = await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: `2026-06-0${run + 2}T08:00:00Z` });
      assert.equal(r.code, 5, `exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /\[LFB_ERR_SOURCE_CHANGED\]/);
      assert.match(r.stderr, /8\.0 MiB/, 'names the size the previous point recorded');
      assert.match(r.stderr, /5 B/, 'names the size now');
      assert.match(r.stderr, /--accept-source-change/, 'says how to go on');
      assert.deepEqual((await readdir(jobDir)).sort(), filesBefore, 'nothing written, no lock left');
    }
    assert.deepEqual(await pointIds(repo), [first]);

    // Half the size is still accepted; less than half only when told so.
    await writeFile(disk, content.subarray(0, 4 * MiB));
    ok(await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: '2026-06-04T08:00:00Z' }), 'backup of half the size');
    await writeFile(disk, content.subarray(0, MiB));
    assert.equal((await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: '2026-06-05T08:00:00Z' })).code, 5);
    ok(await cli(['backup', 'vm', '--repo', repo, '--accept-source-change'], { LIFEBOAT_NOW: '2026-06-05T09:00:00Z' }), 'accepted');
    const ids = await pointIds(repo);
    assert.equal(ids.length, 3, 'the good point, half of it, and the accepted change');
    assert.ok((await restored(dir, repo, ids[0]!)).equals(content));
    assert.ok((await restored(dir, repo, ids[1]!)).equals(content.subarray(0, 4 * MiB)));
    assert.ok((await restored(dir, repo, ids[2]!)).equals(content.subarray(0, MiB)));
  } finally {
    await cleanup();
  }
});

// A reverse run updates the full in place when the sizes are equal: it checks the format on its own path.
for (const method of ['forward', 'reverse']) {
  test(`source change (${method}): a source whose format changed fails before writing anything, unless --accept-source-change`, async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const raw = join(dir, 'vm.img');
      const content = randomBytes(rng(14), 4 * MiB);
      const repo = await firstPoint(dir, raw, content, ['--method', method]);
      const [first] = await pointIds(repo);
      const jobDir = join(repo, 'jobs', 'vm');
      const filesBefore = (await readdir(jobDir)).sort();

      // Same path, same virtual size, now a qcow2 image.
      const qcow2 = join(dir, 'vm.qcow2');
      execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
      await rm(raw);
      execFileSync('mv', [qcow2, raw]);
      const r = await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: '2026-06-02T08:00:00Z' });
      assert.equal(r.code, 5, `exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /\[LFB_ERR_SOURCE_CHANGED\]/);
      assert.match(r.stderr, /raw/);
      assert.match(r.stderr, /qcow2/);
      assert.deepEqual((await readdir(jobDir)).sort(), filesBefore, 'nothing written, no lock left');

      ok(await cli(['backup', 'vm', '--repo', repo, '--accept-source-change'], { LIFEBOAT_NOW: '2026-06-02T09:00:00Z' }), 'accepted');
      const ids = await pointIds(repo);
      assert.deepEqual(ids.slice(0, 1), [first]);
      assert.equal(ids.length, 2);
      for (const id of ids) assert.ok((await restored(dir, repo, id)).equals(content), `point ${id} restores bit-exact`);
    } finally {
      await cleanup();
    }
  });
}
