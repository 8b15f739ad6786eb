/**
 * A server starts its runs' helper processes through its spawner
 * (src/core/spawner.ts): a CBT qcow2 job run by the server has its
 * qemu-storage-daemon forked by the spawner, at the data mover's nice, not by
 * the server; and kill -9 of the server ends the spawner. The daemon is the
 * real one, behind a wrapper on PATH that records who started it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { procStatFields, processRunning } from '../src/core/process-alive.js';
import { MiB, backupJson, cli, randomBytes, rng, tempDir, until } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

test('serve: a CBT run’s qemu-storage-daemon is forked by the spawner at the backup’s nice; kill -9 of the server ends the spawner', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-serve-spawner-');
  let server: Server | undefined;
  const path = process.env['PATH'];
  t.after(async () => {
    if (server) await kill9(server);
    process.env['PATH'] = path;
    await cleanup();
  });
  const real = execFileSync('sh', ['-c', 'command -v qemu-storage-daemon'], { encoding: 'utf8' }).trim();
  const bin = join(dir, 'bin');
  const log = join(dir, 'started.log');
  execFileSync('mkdir', [bin]);
  // Records the daemon's parent and nice (field 19 of stat), then becomes the real daemon (same pid).
  await writeFile(
    join(bin, 'qemu-storage-daemon'),
    `#!/bin/sh\necho "$PPID $(cut -d' ' -f19 /proc/$$/stat)" >> ${JSON.stringify(log)}\nexec ${JSON.stringify(real)} "$@"\n`,
  );
  await chmod(join(bin, 'qemu-storage-daemon'), 0o755);
  await writeFile(log, '');
  process.env['PATH'] = `${bin}:${process.env['PATH']}`;

  const raw = join(dir, 'vm.raw');
  const img = join(dir, 'vm.qcow2');
  await writeFile(raw, randomBytes(rng(7), 8 * MiB));
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, img]);
  const repo = join(dir, 'repo');
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', 'vm', '--repo', repo, '--disk', img, '--cbt'],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  server = await startServer(repo, ['--no-portmap', '--no-scheduler']);
  const serverPid = server.proc.pid!;

  // Handed to the server (it runs for the repository): a full, then an increment found by CBT.
  const full = await backupJson(repo, 'vm');
  assert.equal(full.kind, 'full');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a ${3 * MiB} ${MiB}`, img], { stdio: 'ignore' });
  const inc = (await backupJson(repo, 'vm')) as typeof full & { serverRun?: number; changes?: { method: string }[] };
  assert.ok(inc.serverRun !== undefined, 'the run was handed to the server');
  assert.deepEqual(
    inc.changes?.map((c) => c.method),
    ['cbt'],
  );
  assert.equal(inc.blocksStored, 1);

  const started = (await readFile(log, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => l.split(' ').map(Number) as [number, number]);
  assert.equal(started.length, 2, 'one storage daemon per run');
  const spawnerPid = started[0]![0];
  for (const [parent, nice] of started) {
    assert.notEqual(parent, serverPid, 'not forked by the server');
    assert.equal(parent, spawnerPid, 'both by the one spawner');
    assert.equal(nice, Math.min(19, getPriority(0) + 10), 'at the data mover’s nice (--backup-nice 10)');
  }
  const spawnerCommand = (await readFile(`/proc/${spawnerPid}/cmdline`, 'utf8')).split('\0');
  assert.ok(
    spawnerCommand.some((a) => a.endsWith('spawner-process.js')),
    spawnerCommand.join(' '),
  );
  assert.equal(procStatFields(spawnerPid)?.[1], String(serverPid), 'the spawner is the server’s child');

  await kill9(server);
  server = undefined;
  await until('the spawner to end with its server', async () => (processRunning(spawnerPid) ? undefined : true), 10_000);
  // The repository is whole: the point made through the spawner's daemon verifies.
  const verify = await cli(['verify', 'vm', '--repo', repo, '--all']);
  assert.equal(verify.code, 0, verify.stderr);
});
