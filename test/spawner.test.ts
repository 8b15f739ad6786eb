// The spawner (src/core/spawner.ts): helper processes started by a small process for a big one, with the same
// events as a direct spawn, the caller thread's nice, and no helper left behind when either process goes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { procStatFields, processRunning } from '../src/core/process-alive.js';
import { existsSync } from 'node:fs';
import { spawnHelper, startSpawner, useSpawner, type HelperProcess, type Spawner } from '../src/core/spawner.js';
import { tempDir, until } from './helpers.js';

interface Ended {
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: NodeJS.ErrnoException;
}

/** Everything a helper says until it ends: its standard error (all of it comes before the exit), exit or error. */
function ended(h: HelperProcess): Promise<Ended> {
  let stderr = '';
  let exitedAt: number | undefined;
  h.on('stderr', (text: string) => {
    assert.equal(exitedAt, undefined, 'standard error after the exit');
    stderr += text;
  });
  return new Promise((resolve) => {
    h.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      exitedAt = performance.now();
      resolve({ stderr, code, signal });
    });
    h.once('error', (error: NodeJS.ErrnoException) => resolve({ stderr, code: null, signal: null, error }));
  });
}

/** A process's parent, from /proc/<pid>/stat (the 4th field). */
const parentOf = (pid: number): number => Number(procStatFields(pid)?.[1]);

async function withSpawner(f: (s: Spawner) => Promise<void>): Promise<void> {
  const s = await startSpawner();
  if ('problem' in s) throw new Error(s.problem);
  useSpawner(s.socketPath);
  try {
    await f(s);
  } finally {
    useSpawner(undefined);
    await s.stop();
  }
}

test('through a spawner: standard error, exit codes, signals and a missing program, as a direct spawn gives them', async () => {
  for (const through of [true, false]) {
    const check = async (parent: number): Promise<void> => {
      const many = await ended(spawnHelper('sh', ['-c', 'for i in $(seq 1 2000); do echo "line $i" >&2; done; exit 3']));
      assert.equal(many.code, 3);
      assert.equal(many.stderr.split('\n').filter((l) => l !== '').length, 2000, 'every line before the exit');
      const sleeper = spawnHelper('sleep', ['30']);
      const pid = await until('its pid', async () => sleeper.pid);
      assert.equal(parentOf(pid), parent, through ? 'forked by the spawner' : 'forked by this process');
      const stopped = ended(sleeper);
      assert.equal(sleeper.kill('SIGTERM'), true);
      assert.equal((await stopped).signal, 'SIGTERM');
      assert.equal(sleeper.kill('SIGTERM'), false, 'an ended helper takes no signal');
      const missing = await ended(spawnHelper('/nonexistent/lifeboat-tool', []));
      assert.equal(missing.error?.code, 'ENOENT');
      // A path through a file: Node throws this one rather than reporting it; it is answered all the same.
      const throughFile = await ended(spawnHelper('/etc/passwd/lifeboat-tool', []));
      assert.ok(throughFile.error !== undefined, 'not started');
      assert.notEqual(throughFile.error.code, undefined);
    };
    if (through) await withSpawner((s) => check(s.pid));
    else await check(process.pid);
  }
});

test('a helper runs at the nice of the thread that asked for it (a backup thread lowers its own)', async () => {
  await withSpawner(async (s) => {
    const niceOf = `cut -d' ' -f19 /proc/$$/stat >&2; sleep 0.2`;
    const here = await ended(spawnHelper('sh', ['-c', niceOf]));
    // A worker thread lowers its own priority by 7 and asks for the same helper through the same spawner.
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const { getPriority, setPriority } = require('node:os');
       setPriority(0, getPriority(0) + 7);
       import(workerData.module).then(({ spawnHelper, useSpawner }) => {
         useSpawner(workerData.socket);
         const h = spawnHelper('sh', ['-c', workerData.cmd]);
         let err = '';
         h.on('stderr', (t) => (err += t));
         const t = setInterval(() => { if (h.pid !== undefined) { clearInterval(t); const stat = require('node:fs').readFileSync('/proc/' + h.pid + '/stat', 'latin1'); parent = Number(stat.split(') ')[1].split(' ')[1]); } }, 1);
         let parent;
         h.on('exit', () => parentPort.postMessage({ err, own: getPriority(0), parent }));
       });`,
      { eval: true, workerData: { module: new URL('../src/core/spawner.js', import.meta.url).href, socket: s.socketPath, cmd: niceOf } },
    );
    const { err, own, parent } = await new Promise<{ err: string; own: number; parent: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.equal(parent, s.pid, 'forked by the spawner (a fork from the worker thread would have its nice too)');
    assert.equal(Number(err.trim()), own, 'the helper has the worker thread’s nice');
    assert.equal(Number(err.trim()), Number(here.stderr.trim()) + 7);
  });
});

test('a spawner that dies: its running helpers are ended and reported, later ones start directly', async () => {
  const s = await startSpawner();
  if ('problem' in s) throw new Error(s.problem);
  useSpawner(s.socketPath);
  try {
    const sleeper = spawnHelper('sleep', ['30']);
    const pid = await until('its pid', async () => sleeper.pid);
    const end = ended(sleeper);
    process.kill(s.pid, 'SIGKILL');
    const e = await end;
    assert.deepEqual([e.code, e.signal, e.error], [null, null, undefined], 'reported ended (how is not known without the spawner)');
    assert.equal(processRunning(pid), false, 'the orphaned helper is gone when its exit is reported');
    const after = await ended(spawnHelper('sh', ['-c', 'echo direct >&2']));
    assert.equal(after.stderr, 'direct\n');
  } finally {
    useSpawner(undefined);
    await s.stop();
  }
});

test('a spawner that cannot be reached: helpers start directly', async () => {
  useSpawner('/nonexistent/lifeboat-spawner.sock');
  try {
    const r = await ended(spawnHelper('sh', ['-c', 'echo here >&2; exit 5']));
    assert.deepEqual([r.stderr, r.code], ['here\n', 5]);
  } finally {
    useSpawner(undefined);
  }
});

test('kill -9 of the process that started a spawner: the spawner ends its helpers (SIGTERM, SIGKILL after the grace), removes its folder and exits', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-spawner-owner-');
  const marker = join(dir, 'term');
  // A process of its own starts a spawner (grace 300 ms) and two helpers: one records SIGTERM and exits, one
  // ignores SIGTERM. It prints the pids and waits.
  const module = new URL('../src/core/spawner.js', import.meta.url).href;
  const owner = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { startSpawner, useSpawner, spawnHelper } = await import(${JSON.stringify(module)});
       const s = await startSpawner({ graceMs: 300 });
       useSpawner(s.socketPath);
       const polite = spawnHelper('sh', ['-c', 'trap "echo term > $0; exit 0" TERM; while true; do sleep 0.05; done', process.argv[1]]);
       const stubborn = spawnHelper('sh', ['-c', 'trap "" TERM; while true; do sleep 0.05; done']);
       const t = setInterval(() => { if (polite.pid && stubborn.pid) { clearInterval(t); console.log(JSON.stringify({ spawner: s.pid, socket: s.socketPath, helpers: [polite.pid, stubborn.pid] })); } }, 5);
       setInterval(() => undefined, 1000);`,
      marker,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let started: { spawner: number; socket: string; helpers: number[] } | undefined;
  try {
    const got = await new Promise<{ spawner: number; socket: string; helpers: number[] }>((resolve, reject) => {
      owner.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { spawner: number; socket: string; helpers: number[] }));
      owner.once('exit', (code) => reject(new Error(`the owner exited (${code})`)));
    });
    started = got;
    owner.kill('SIGKILL');
    await until('the spawner to end', async () => (processRunning(got.spawner) ? undefined : true), 10_000);
    for (const pid of got.helpers) await until(`helper ${pid} to end`, async () => (processRunning(pid) ? undefined : true), 10_000);
    assert.equal((await readFile(marker, 'utf8')).trim(), 'term', 'the helper was sent SIGTERM first');
    assert.equal(existsSync(dirname(got.socket)), false, 'the spawner removed its folder');
  } finally {
    owner.kill('SIGKILL');
    // Whatever failed, nothing of this test is left running (a spawner left would hold this test's output open).
    for (const pid of started === undefined ? [] : [started.spawner, ...started.helpers]) if (processRunning(pid)) process.kill(pid, 'SIGKILL');
    await cleanup();
  }
});
