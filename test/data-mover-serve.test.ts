/**
 * `lifeboat serve` runs its backups in the data mover thread at a lower CPU
 * priority (default --backup-nice 10; --backup-nice 0 turns it off), seen
 * from outside in /proc/<pid>/task/<tid>/stat (field 19, nice). A real
 * server on ephemeral ports, no portmapper; no root or QEMU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { cli, randomBytes, rng, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

/** Nice of each thread of a process, by thread id. */
async function threadNices(pid: number): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue;
    // Fields after the command name (which may hold spaces) start at field 3.
    out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19 - 3]));
  }
  return out;
}

test('serve: the data mover thread and its block workers run at nice 10 by default, the main thread at the server’s; --backup-nice 0 leaves them all there', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-data-mover-serve-');
  const servers: Server[] = [];
  t.after(async () => {
    for (const s of servers) await kill9(s);
    await cleanup();
  });
  const repo = join(dir, 'repo');
  await writeFile(join(dir, 'vm.img'), randomBytes(rng(4), 1024 * 1024));
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', 'vm', '--repo', repo, '--disk', join(dir, 'vm.img')],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  const niced = async (args: string[]): Promise<{ main: number; byNice: Map<number, number> }> => {
    const server = await startServer(repo, ['--no-portmap', '--no-scheduler', ...args]);
    servers.push(server);
    const pid = server.proc.pid!;
    const nices = await threadNices(pid);
    const byNice = new Map<number, number>();
    for (const n of nices.values()) byNice.set(n, (byNice.get(n) ?? 0) + 1);
    await kill9(server);
    return { main: nices.get(pid)!, byNice };
  };
  const byDefault = await niced([]);
  const base = byDefault.main;
  assert.equal(base, getPriority(0), 'the main thread keeps the nice it was started with');
  assert.ok(
    (byDefault.byNice.get(Math.min(19, base + 10)) ?? 0) >= 2,
    `the mover and at least one block worker at nice ${base + 10}: ${JSON.stringify([...byDefault.byNice])}`,
  );
  const off = await niced(['--backup-nice', '0']);
  assert.deepEqual([...off.byNice.keys()], [base], 'with --backup-nice 0 every thread runs at the main thread’s nice');
});
