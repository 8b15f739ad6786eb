// The server's side of data movers (MoverHub) driven as movers drive it, without HTTP: which mover gets a backup,
// progress and results, stops, and what happens when a mover goes quiet, starts again, stops, or never comes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../src/core/clock.js';
import { LifeboatError, isLifeboatError } from '../src/core/errors.js';
import type { Logger } from '../src/core/log.js';
import type { BackupOutcome, BackupRequest } from '../src/service/runtime/backup-runner.js';
import { MoverHub } from '../src/service/movers/mover-hub.js';
import type { BackupProgress } from '../src/methods/backup-run.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const OUTCOME = {
  result: { pointId: 'a1b2c3', kind: 'full', file: 'x.vbk', bytesRead: 1, bytesStored: 1, steps: { data: 1 } },
  changes: { method: 'full', reason: null, fellBack: false },
};

interface Req {
  readonly request: BackupRequest;
  readonly controller: AbortController;
  readonly progress: BackupProgress[];
  readonly notes: string[];
}

function req(runId: number): Req {
  const controller = new AbortController();
  const progress: BackupProgress[] = [];
  const notes: string[] = [];
  return { controller, progress, notes, request: { signal: controller.signal, onProgress: (p) => progress.push(p), runId, note: (_l, m) => notes.push(m) } };
}

function hub(o: { timeoutMs?: number; noMoverMs?: number; local?: (job: string) => Promise<BackupOutcome> } = {}): MoverHub {
  return new MoverHub({
    local: { backup: (_repo, job) => (o.local ?? (() => Promise.reject(new Error(`${job} ran on the server`))))(job) },
    moverOf: async (_repo, job) => (job.startsWith('local') ? undefined : job.split('@')[1]),
    clock: systemClock,
    logger: quiet,
    moverTimeoutMs: o.timeoutMs ?? 60_000,
    noMoverMs: o.noMoverMs ?? 60_000,
    pollWaitMs: 200,
  });
}

const poll = (h: MoverHub, name: string, session: string, group: string | undefined, running: number[] = [], maxTasks = 2) =>
  h.poll(name, { session: `session-${session}`, ...(group ? { group } : {}), maxTasks, running });

test('a job without a mover runs on the server; one naming a group goes to a mover of that group, with its progress and outcome', async () => {
  const h = hub({ local: async () => OUTCOME as unknown as BackupOutcome });
  try {
    assert.deepEqual(await h.backup('/r', 'local-job', req(1).request), OUTCOME);
    const r = req(7);
    const done = h.backup('/r', 'web@g1', r.request);
    assert.deepEqual(await poll(h, 'other', 'o', 'g2'), { tasks: [], stop: [], timeoutMs: 60_000 }, 'a mover of another group gets nothing');
    const got = await poll(h, 'm1', 'a', 'g1');
    const id = got.tasks[0]!.id;
    assert.deepEqual(got, { tasks: [{ id, repo: '/r', job: 'web@g1', run: 7 }], stop: [], timeoutMs: 60_000 });
    assert.deepEqual(h.progress('m1', id, { session: 'session-a', disk: 0, diskCount: 1, bytesDone: 5, bytesTotal: 10 }), { stop: null });
    assert.deepEqual(r.progress, [{ disk: 0, diskCount: 1, bytesDone: 5, bytesTotal: 10 }]);
    assert.throws(
      () => h.progress('m1', id, { session: 'session-x', disk: 0, diskCount: 1, bytesDone: 5, bytesTotal: 10 }),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_MOVER_TASK_NOT_FOUND'),
    );
    h.result('m1', id, { session: 'session-a', outcome: OUTCOME });
    assert.deepEqual(await done, OUTCOME);
    assert.deepEqual(r.notes, ['backup given to data mover m1']);
    assert.deepEqual(
      h.list().map((m) => [m.name, m.group, m.running, m.alive]),
      [
        ['m1', 'g1', [], true],
        ['other', 'g2', [], true],
      ],
    );
    // A job may name one mover by its name too.
    const byName = h.backup('/r', 'db@m1', req(8).request);
    assert.equal((await poll(h, 'm1', 'a', 'g1')).tasks[0]?.job, 'db@m1');
    h.result('m1', id + 1, { session: 'session-a', error: { code: 'LFB_ERR_DISK_NOT_FOUND', message: 'no disk' } });
    await assert.rejects(byName, (e: unknown) => isLifeboatError(e, 'LFB_ERR_DISK_NOT_FOUND') && /no disk \(on mover m1\)/.test((e as Error).message));
  } finally {
    h.close();
  }
});

test('backups go to the waiting movers of the group with the fewest, up to each one’s cap', async () => {
  const h = hub();
  try {
    const waits = [poll(h, 'm1', 'a', 'g', [], 1), poll(h, 'm2', 'b', 'g', [], 1)];
    const done = [1, 2, 3].map((n) => h.backup('/r', `job${n}@g`, req(n).request));
    const [a, b] = await Promise.all(waits);
    assert.deepEqual([a!.tasks.length, b!.tasks.length], [1, 1], 'one each, at once');
    // The third waits for a free place.
    const next = poll(h, 'm1', 'a', 'g', [a!.tasks[0]!.id], 1);
    h.result('m1', a!.tasks[0]!.id, { session: 'session-a', outcome: OUTCOME });
    h.result('m2', b!.tasks[0]!.id, { session: 'session-b', outcome: OUTCOME });
    const third = await poll(h, 'm1', 'a', 'g', [], 1);
    assert.equal((await next).tasks.length + third.tasks.length, 1);
    const t = [...(await next).tasks, ...third.tasks][0]!;
    h.result('m1', t.id, { session: 'session-a', outcome: OUTCOME });
    await Promise.all(done);
  } finally {
    h.close();
  }
});

test('a quiet mover loses its backup to another of the group; a late word from it is refused', async () => {
  const h = hub({ timeoutMs: 300 });
  try {
    const r = req(3);
    const done = h.backup('/r', 'web@g', r.request);
    const first = await poll(h, 'm1', 'a', 'g');
    assert.equal(first.tasks.length, 1);
    // m1 says nothing more; m2 keeps polling and gets the backup once m1's time is up.
    let second;
    for (let i = 0; i < 20 && !(second?.tasks.length ?? 0); i++) second = await poll(h, 'm2', 'b', 'g');
    assert.equal(second?.tasks[0]?.id, first.tasks[0]!.id);
    assert.match(
      r.notes.join('\n'),
      /data mover m1 lost the backup \(no word from it for \d+ s\): it goes to another mover of g\n.*given to data mover m2 \(hand-over 1\)/,
    );
    assert.throws(
      () => h.result('m1', first.tasks[0]!.id, { session: 'session-a', outcome: OUTCOME }),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_MOVER_TASK_NOT_FOUND'),
    );
    h.result('m2', first.tasks[0]!.id, { session: 'session-b', outcome: OUTCOME });
    assert.deepEqual(await done, OUTCOME);
  } finally {
    h.close();
  }
});

test('a second process under a live mover’s name is refused; a stopping mover hands its backups over; the fourth loss fails the run', async () => {
  const h = hub();
  try {
    const r = req(4);
    const done = h.backup('/r', 'web@g', r.request).then(
      () => assert.fail('the backup succeeded'),
      (e: unknown) => e,
    );
    const id = (await poll(h, 'm1', 'a', 'g')).tasks[0]!.id;
    await assert.rejects(poll(h, 'm1', 'a2', 'g'), (e: unknown) => isLifeboatError(e, 'LFB_ERR_MOVER_NAME_IN_USE'));
    // It stops (SIGTERM): the backup it interrupted goes to another mover.
    h.result('m1', id, { session: 'session-a', error: { code: 'LFB_ERR_INTERRUPTED', message: 'data mover m1 is stopping' } });
    assert.equal((await poll(h, 'm2', 'b', 'g')).tasks[0]?.id, id);
    // m2 does not list it as running (it never got it): lost again, and given again in the same answer.
    assert.equal((await poll(h, 'm2', 'b', 'g', [])).tasks[0]?.id, id);
    assert.equal((await poll(h, 'm2', 'b', 'g', [])).tasks[0]?.id, id);
    await poll(h, 'm2', 'b', 'g', []);
    assert.ok(isLifeboatError(await done, 'LFB_ERR_MOVER_LOST'), String(await done));
    assert.equal(r.notes.filter((n) => n.includes('lost the backup')).length, 3);
  } finally {
    h.close();
  }
});

test('a stopped run: queued, it ends at once; on a mover, the mover is told and its error ends it', async () => {
  const h = hub();
  try {
    const queued = req(5);
    const q = h.backup('/r', 'web@nobody', queued.request);
    queued.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'stopped by a person'));
    await assert.rejects(q, (e: unknown) => isLifeboatError(e, 'LFB_ERR_INTERRUPTED') && /stopped by a person/.test((e as Error).message));

    const r = req(6);
    const done = h.backup('/r', 'web@g', r.request);
    const id = (await poll(h, 'm1', 'a', 'g')).tasks[0]!.id;
    const waiting = poll(h, 'm1', 'a', 'g', [id]);
    r.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', 'stopped by a person'));
    assert.deepEqual((await waiting).stop, [{ id, code: 'LFB_ERR_INTERRUPTED', message: 'stopped by a person' }], 'a waiting poll is answered with it');
    assert.deepEqual(h.progress('m1', id, { session: 'session-a', disk: 0, diskCount: 1, bytesDone: 1, bytesTotal: 2 }).stop?.id, id);
    h.result('m1', id, { session: 'session-a', error: { code: 'LFB_ERR_INTERRUPTED', message: 'stopped by a person' } });
    await assert.rejects(done, (e: unknown) => isLifeboatError(e, 'LFB_ERR_INTERRUPTED'));
    assert.deepEqual(r.progress, [], 'progress after a stop is not passed on');
  } finally {
    h.close();
  }
});

test('a backup no live mover of its group takes in time fails with LFB_ERR_NO_MOVER', async () => {
  const h = hub({ timeoutMs: 300, noMoverMs: 400 });
  // The hub's sweeper does not hold the process open (a server's sockets do): this test's timer does.
  const alive = setInterval(() => undefined, 50);
  try {
    await poll(h, 'm1', 'a', 'other');
    await assert.rejects(
      h.backup('/r', 'web@g', req(9).request),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_NO_MOVER') && /group g/.test((e as Error).message),
    );
  } finally {
    clearInterval(alive);
    h.close();
  }
});
