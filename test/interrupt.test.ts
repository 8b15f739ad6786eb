import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, cli, MiB, tempDir, type CliResult } from './helpers.js';

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Starts `lifeboat <args>`, waits until a file whose name matches `until`
 * appears in `dir` (the run is under way), sends `signal`, and returns how it
 * ended. The child is killed in every outcome.
 */
async function interruptWhen(args: string[], dir: string, until: RegExp, signal: NodeJS.Signals): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr }));
  });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const names = await readdir(dir).catch(() => [] as string[]);
      if (names.some((n) => until.test(n))) break;
      if (child.exitCode !== null) assert.fail(`lifeboat ${args[0]} ended before it could be interrupted: ${stderr}`);
      if (Date.now() > deadline) assert.fail(`no file matching ${String(until)} in ${dir} after 30 s`);
      await sleep(5);
    }
    child.kill(signal);
    return await ended;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

async function pointIds(repo: string): Promise<string[]> {
  return (JSON.parse(ok(await cli(['points', 'vm', '--repo', repo, '--json']), 'points')) as { id: string }[]).map((p) => p.id);
}

/** Neither a temporary file nor the job's lock is left in the job folder. */
async function assertClean(jobDir: string, what: string): Promise<void> {
  const names = await readdir(jobDir);
  assert.deepEqual(
    names.filter((n) => n.endsWith('.tmp') || n.startsWith('lock')),
    [],
    `${what}: left ${names.join(', ')}`,
  );
}

test('interrupt: SIGINT and SIGTERM stop a backup and a restore at a safe point, clean up, exit 130 / 143; the next run succeeds and every point restores bit-exact', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'vm.img');
    const jobDir = join(repo, 'jobs', 'vm');
    // First point: a mostly sparse 256 MiB disk, quick to back up.
    const first = Buffer.alloc(256 * MiB);
    randomBytes(4 * MiB).copy(first, 0);
    await writeFile(disk, first.subarray(0, 4 * MiB));
    await truncate(disk, first.length);
    ok(await cli(['repo', 'init', repo, '--compression', 'lz4']), 'init');
    ok(await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--retain-points', '5']), 'job create');
    ok(await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_NOW: '2026-06-01T08:00:00Z' }), 'first backup');
    const [firstId] = await pointIds(repo);

    // Then 256 MiB of random data: every block is read, hashed and stored, so the run takes a while.
    const second = randomBytes(256 * MiB);
    await writeFile(disk, second);
    const backupArgs = ['backup', 'vm', '--repo', repo];
    for (const [signal, exit] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      const r = await interruptWhen(backupArgs, jobDir, /\.tmp$/, signal);
      assert.equal(r.code, exit, `${signal}: exit ${r.code} (signal ${r.signal})\n${r.stderr}`);
      assert.match(r.stderr, /interrupted/);
      assert.match(r.stderr, /\[LFB_ERR_INTERRUPTED\]/);
      await assertClean(jobDir, `backup after ${signal}`);
      assert.deepEqual(await pointIds(repo), [firstId], `${signal}: no new point`);
    }
    const done = ok(await cli([...backupArgs, '--json']), 'backup after the interrupts');
    const secondId = (JSON.parse(done) as { pointId: string }).pointId;
    assert.doesNotMatch(done, /removed .* left by an interrupted run/, 'the interrupted runs left nothing to clean up');
    assert.deepEqual(await pointIds(repo), [firstId, secondId]);

    // A restore stops too, and leaves neither its unfinished file nor the target.
    const out = join(dir, 'out');
    const target = join(dir, 'out.raw');
    const r = await interruptWhen(['restore', 'vm', '--repo', repo, '--point', secondId, '--to', target, '--format', 'raw'], dir, /\.partial$/, 'SIGINT');
    assert.equal(r.code, 130, `restore: exit ${r.code} (signal ${r.signal})\n${r.stderr}`);
    assert.match(r.stderr, /interrupted/);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('out')),
      [],
      'no partial file and no target left',
    );

    for (const [id, content] of [
      [firstId!, first],
      [secondId, second],
    ] as const) {
      ok(await cli(['restore', 'vm', '--repo', repo, '--point', id, '--to', out, '--format', 'raw', '--force']), `restore ${id}`);
      assert.ok((await readFile(out)).equals(content), `point ${id} restores bit-exact`);
      await rm(out);
    }
  } finally {
    await cleanup();
  }
});
