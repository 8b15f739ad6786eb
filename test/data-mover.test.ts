/**
 * The data mover (src/service/runtime/data-mover.ts): the server's backups
 * in a worker thread of their own, niced. In the test's process, files in a
 * temporary folder; no root, QEMU or listening port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/service.js';
import { openCatalog } from '../src/catalog/index.js';
import { systemClock } from '../src/core/clock.js';
import { LifeboatError, isLifeboatError } from '../src/core/errors.js';
import type { Logger } from '../src/core/log.js';
import type { BackupProgress } from '../src/methods/backup-run.js';
import { InProcessBackupRunner, type BackupRunner } from '../src/service/runtime/backup-runner.js';
import { DataMover } from '../src/service/runtime/data-mover.js';
import { ServiceRuntime } from '../src/service/runtime/service-runtime.js';
import { cli, randomBytes, rng, tempDir, until } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const MiB = 1024 * 1024;

/** A repository with a small job (`small`, 8 MiB) and one long enough to stop midway (`big`, 160 MiB). */
async function repository(dir: string): Promise<string> {
  const repo = join(dir, 'repo');
  await writeFile(join(dir, 'small.img'), randomBytes(rng(1), 8 * MiB));
  await writeFile(join(dir, 'big.img'), randomBytes(rng(2), 160 * MiB));
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', 'small', '--repo', repo, '--disk', join(dir, 'small.img')],
    ['job', 'create', 'big', '--repo', repo, '--disk', join(dir, 'big.img')],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  return repo;
}

/** Nice of every thread of this process, by thread id (field 19 of /proc/self/task/<tid>/stat). */
async function threadNices(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const tid of await readdir('/proc/self/task')) {
    const stat = await readFile(`/proc/self/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue; // ended since it was listed
    // Fields after the command name (which may hold spaces) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(Number(tid), Number(fields[19 - 3]));
  }
  return out;
}

const noStop = (): AbortSignal => new AbortController().signal;

test('backups run in the data mover thread: result, change method and paced progress; the thread and its block workers are niced, the main thread is not', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-data-mover-');
  const movers: DataMover[] = [];
  t.after(async () => {
    for (const m of movers) await m.close();
    await cleanup();
  });
  const repo = await repository(dir);
  const base = getPriority(0);
  const before = await threadNices();
  const mover = new DataMover({ logger: quiet, nice: 7, workers: 2 });
  movers.push(mover);
  await mover.start();
  const nices = await threadNices();
  assert.equal(nices.get(process.pid), base, 'the main thread keeps its priority');
  const niced = [...nices].filter(([tid, n]) => !before.has(tid) && n === Math.min(19, base + 7));
  assert.ok(niced.length >= 3, `the mover thread and its 2 block workers run at nice ${base + 7}: ${JSON.stringify([...nices])}`);
  assert.equal([...nices].filter(([tid, n]) => before.has(tid) && n !== base).length, 0, 'no thread that was there before is niced');

  const progress: BackupProgress[] = [];
  const from = Date.now();
  const full = await mover.backup(repo, 'big', { signal: noStop(), onProgress: (p) => progress.push(p) });
  const ms = Date.now() - from;
  assert.equal(full.result.kind, 'full');
  assert.equal(full.result.bytesRead, 160 * MiB);
  assert.deepEqual(full.changes, { method: 'full', reason: full.changes.reason, fellBack: false });
  assert.equal(progress.at(-1)?.bytesDone, 160 * MiB, "the disk's last progress always crosses");
  assert.ok(progress.length <= ms / 100 + 3, `at most ~10 progress messages a second: ${progress.length} in ${ms} ms`);
  const points = await new LifeboatService(systemClock).points(repo, 'big');
  assert.deepEqual(
    points.points.map((p) => p.id),
    [full.result.pointId],
  );
  const inc = await mover.backup(repo, 'big', { signal: noStop(), onProgress: () => undefined });
  assert.equal(inc.result.kind, 'increment');
  assert.equal(inc.changes.method, 'hash');

  const plain = new DataMover({ logger: quiet, nice: 0, workers: 1 });
  movers.push(plain);
  const known = new Set((await threadNices()).keys());
  await plain.start();
  const added = [...(await threadNices())].filter(([tid]) => !known.has(tid));
  assert.ok(added.length >= 2, 'a thread and a block worker were started');
  assert.deepEqual(
    added.filter(([, n]) => n !== base),
    [],
    '--backup-nice 0: the same priority as the server',
  );
});

test('a stop ends the backup inside the thread at its next safe point with its words, leaving nothing behind; errors cross with code, message and details', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-data-mover-');
  const mover = new DataMover({ logger: quiet, nice: 5, workers: 2 });
  t.after(async () => {
    await mover.close();
    await cleanup();
  });
  const repo = await repository(dir);
  await mover.start();
  const stop = new AbortController();
  const stopped = await mover
    .backup(repo, 'big', {
      signal: stop.signal,
      onProgress: (p) => {
        if (p.bytesDone > 0 && !stop.signal.aborted)
          stop.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'a person stopped it', { details: { reason: 'stopped' } }));
      },
    })
    .then(
      () => assert.fail('the backup was not stopped'),
      (err: unknown) => err,
    );
  assert.ok(isLifeboatError(stopped, 'LFB_ERR_INTERRUPTED'), String(stopped));
  assert.match(stopped.message, /^a person stopped it; the run stopped at a safe point/);
  assert.deepEqual(stopped.details, { reason: 'stopped' });
  assert.deepEqual(await readdir(join(repo, 'jobs', 'big')), ['job.json'], 'no temporary file, no lock');

  // A stop that comes before the thread has the backup (the run was stopped while it was starting:
  // its catalog record, the repository's opening) stops it all the same, and nothing is written.
  for (const when of ['before the call', 'while the repository opens'] as const) {
    const early = new AbortController();
    const reason = new LifeboatError('LFB_ERR_INTERRUPTED', 'stopped as it started', { details: { reason: 'stopped' } });
    if (when === 'before the call') early.abort(reason);
    const call = mover.backup(repo, 'small', { signal: early.signal, onProgress: () => undefined });
    if (when === 'while the repository opens') early.abort(reason);
    const err = await call.then(
      (r) => assert.fail(`a backup stopped ${when} ran to the end: point ${r.result.pointId}`),
      (e: unknown) => e,
    );
    assert.ok(isLifeboatError(err, 'LFB_ERR_INTERRUPTED'), `${when}: ${String(err)}`);
    assert.deepEqual(await readdir(join(repo, 'jobs', 'small')), ['job.json'], `${when}: no point, no temporary file, no lock`);
  }

  // The same errors as a backup on this thread: code, message and details intact.
  const inProcess = new InProcessBackupRunner(new LifeboatService(systemClock));
  for (const job of ['nope', 'gone']) {
    if (job === 'gone') {
      await writeFile(join(dir, 'gone.img'), randomBytes(rng(3), MiB));
      const r = await cli(['job', 'create', 'gone', '--repo', repo, '--disk', join(dir, 'gone.img')]);
      assert.equal(r.code, 0, r.stderr);
      await rm(join(dir, 'gone.img'));
    }
    const failure = async (runner: BackupRunner): Promise<LifeboatError> => {
      const err = await runner.backup(repo, job, { signal: noStop(), onProgress: () => undefined }).then(
        () => assert.fail(`the backup of ${job} succeeded`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof LifeboatError, String(err));
      return err;
    };
    const here = await failure(inProcess);
    const there = await failure(mover);
    assert.notEqual(here.code, 'LFB_ERR_INTERNAL', here.message);
    assert.deepEqual({ code: there.code, message: there.message, details: there.details }, { code: here.code, message: here.message, details: here.details });
  }
});

test('a data mover thread that dies fails its run with LFB_ERR_INTERNAL, its job lock is released, and the next run gets a new thread', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-data-mover-');
  const errors: string[] = [];
  const logger: Logger = { ...quiet, error: (message) => void errors.push(message) };
  const mover = new DataMover({ logger, nice: 0, workers: 1, threadUrl: new URL('./data-mover-dying-thread.js', import.meta.url) });
  t.after(async () => {
    await mover.close();
    await cleanup();
  });
  const repo = await repository(dir);
  await mover.start();
  const first = mover.threadId;
  const stop = new AbortController();
  const lost = await mover
    .backup(repo, 'big', {
      signal: stop.signal,
      // Midway through the data, the job lock held: the stop kills this thread (data-mover-dying-thread.ts).
      onProgress: (p) => p.bytesDone > 0 && !stop.signal.aborted && stop.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'a person stopped it')),
    })
    .then(
      () => assert.fail('the run survived its thread'),
      (err: unknown) => err,
    );
  assert.ok(isLifeboatError(lost, 'LFB_ERR_INTERNAL'), String(lost));
  assert.match(lost.message, /data mover thread .* ended unexpectedly \(the test thread died on purpose\)/);
  assert.ok(errors.includes('service: the data mover thread ended with runs going'), errors.join('\n'));
  await until('the lock of the dead run to be released', async () => ((await readdir(join(repo, 'jobs', 'big'))).includes('lock') ? undefined : true), 5000);

  const next = await mover.backup(repo, 'big', { signal: noStop(), onProgress: () => undefined });
  assert.equal(next.result.kind, 'full', 'the dead run made no point');
  assert.notEqual(mover.threadId, first, 'a new thread');
  assert.deepEqual(
    (await new LifeboatService(systemClock).points(repo, 'big')).points.map((p) => p.id),
    [next.result.pointId],
  );
});

test('the runtime with the data mover: runs end in the catalog with their point and change method, or with the backup error code unchanged', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-data-mover-');
  const catalog = await openCatalog(join(dir, 'state'));
  const mover = new DataMover({ logger: quiet, nice: 10, workers: 1 });
  const runtime = new ServiceRuntime({
    catalog,
    service: new LifeboatService(systemClock),
    runner: mover,
    repos: [join(dir, 'repo')],
    stateDir: join(dir, 'state'),
    clock: systemClock,
    logger: quiet,
    schedules: false,
  });
  t.after(async () => {
    await runtime.close();
    await mover.close();
    await catalog.close();
    await cleanup();
  });
  const repo = await repository(dir);
  await mover.start();
  await runtime.start();
  const ended = async (job: string) => {
    const queued = await runtime.runNow(repo, job, 'api');
    return until(`run ${queued.id} to end`, async () => {
      const r = await catalog.getRun(queued.id);
      return r.endedAt === null ? undefined : r;
    });
  };
  const ok = await ended('small');
  assert.equal(ok.state, 'succeeded', ok.errorMessage ?? '');
  assert.equal(ok.changeMethod, 'full');
  assert.equal(ok.bytesRead, 8 * MiB);
  assert.equal(runtime.resultOf(ok.id)?.pointId, ok.pointId);
  await writeFile(join(dir, 'small.img'), '');
  const failed = await ended('small');
  assert.equal(failed.state, 'failed');
  const direct = await new InProcessBackupRunner(new LifeboatService(systemClock))
    .backup(repo, 'small', { signal: noStop(), onProgress: () => undefined })
    .then(
      () => assert.fail('the backup of an emptied disk succeeded'),
      (e: unknown) => e as LifeboatError,
    );
  assert.deepEqual([failed.errorCode, failed.errorMessage], [direct.code, direct.message]);
  const log = (await catalog.readLog(failed.id)).map((l) => l.message);
  assert.ok(log.includes(`failed: ${direct.message} [${direct.code}]`), log.join('\n'));
});
