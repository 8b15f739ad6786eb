// The spawner (src/core/spawner.ts): helper processes started by a small process for a big one, with the same
// events as a direct spawn, the caller thread's nice, and no helper left behind when either process goes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { processRunning } from '../src/core/process-alive.js';
import { spawnHelper, startSpawner, useSpawner, type HelperProcess, type Spawner } from '../src/core/spawner.js';
import { until } from './helpers.js';

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
    const check = async (): Promise<void> => {
      const many = await ended(spawnHelper('sh', ['-c', 'for i in $(seq 1 2000); do echo "line $i" >&2; done; exit 3']));
      assert.equal(many.code, 3);
      assert.equal(many.stderr.split('\n').filter((l) => l !== '').length, 2000, 'every line before the exit');
      const sleeper = spawnHelper('sleep', ['30']);
      await until('its pid', async () => sleeper.pid);
      const stopped = ended(sleeper);
      assert.equal(sleeper.kill('SIGTERM'), true);
      assert.equal((await stopped).signal, 'SIGTERM');
      assert.equal(sleeper.kill('SIGTERM'), false, 'an ended helper takes no signal');
      const missing = await ended(spawnHelper('/nonexistent/lifeboat-tool', []));
      assert.equal(missing.error?.code, 'ENOENT');
    };
    if (through) await withSpawner(check);
    else await check();
  }
});

test('a helper runs at the nice of the thread that asked for it (a backup thread lowers its own)', async () => {
  await withSpawner(async (s) => {
    const niceOf = `cut -d' ' -f19 /proc/$$/stat >&2`;
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
         h.on('exit', () => parentPort.postMessage({ err, own: getPriority(0) }));
       });`,
      { eval: true, workerData: { module: new URL('../src/core/spawner.js', import.meta.url).href, socket: s.socketPath, cmd: niceOf } },
    );
    const { err, own } = await new Promise<{ err: string; own: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
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
    assert.equal((await end).signal, 'SIGTERM');
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

test('kill -9 of the process that started a spawner: the spawner ends, and its helpers are sent SIGTERM', async () => {
  // A process of its own starts a spawner and a helper that records SIGTERM, prints both pids, and waits.
  const module = new URL('../src/core/spawner.js', import.meta.url).href;
  const owner = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { startSpawner, useSpawner, spawnHelper } = await import(${JSON.stringify(module)});
       const s = await startSpawner();
       useSpawner(s.socketPath);
       const h = spawnHelper('sh', ['-c', 'trap "echo term > $0; exit 0" TERM; while true; do sleep 0.05; done', process.argv[1]]);
       const t = setInterval(() => { if (h.pid) { clearInterval(t); console.log(JSON.stringify({ spawner: s.pid, helper: h.pid })); } }, 5);
       setInterval(() => undefined, 1000);`,
      join(await import('node:os').then((os) => os.tmpdir()), `lifeboat-spawner-term-${process.pid}`),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const marker = join((await import('node:os')).tmpdir(), `lifeboat-spawner-term-${process.pid}`);
  try {
    const pids = await new Promise<{ spawner: number; helper: number }>((resolve, reject) => {
      owner.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { spawner: number; helper: number }));
      owner.once('exit', (code) => reject(new Error(`the owner exited (${code})`)));
    });
    owner.kill('SIGKILL');
    await until('the spawner to end', async () => (processRunning(pids.spawner) ? undefined : true), 10_000);
    await until('the helper to end', async () => (processRunning(pids.helper) ? undefined : true), 10_000);
    assert.equal((await readFile(marker, 'utf8')).trim(), 'term', 'the helper was sent SIGTERM');
  } finally {
    owner.kill('SIGKILL');
    await import('node:fs/promises').then((fs) => fs.rm(marker, { force: true }));
  }
});
