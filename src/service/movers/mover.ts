/**
 * `lifeboat mover`: a data mover on a host that reaches some jobs' disks. It
 * polls the server (protocol.ts) for backups of the jobs that name it or its
 * group, runs each here (reading the disks here, writing the shared
 * repository: S3, or a folder every host mounts at the same path), reports
 * progress and the outcome, and stops a backup the server says to stop. It
 * keeps nothing: killed, its backups are never committed and go to another
 * mover; started again, it polls anew.
 */
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LifeboatService } from '../../app/service.js';
import { LifeboatError, errorFromCode, isLifeboatError, type ErrorCode } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { NATIVE_HELPER_MISSING, nativeHelper } from '../../core/native.js';
import type { BackupProgress } from '../../methods/backup-run.js';
import { BlockWorkerPool } from '../../compress/block-pool.js';
import { InProcessBackupRunner } from '../runtime/backup-runner.js';
import type { MoverTask, PollReply, ProgressReply } from './protocol.js';

export interface MoverOptions {
  /** The servers' API base URLs (https://host:9443/api/v1): the one running the scheduler is used, the next tried when it stands by or is gone. */
  readonly servers: readonly string[];
  readonly token: string;
  readonly name: string;
  readonly group?: string | undefined;
  readonly maxTasks: number;
  /** Certificates (PEM) to trust for the server's, beside the system's (a self-signed server). */
  readonly ca?: Buffer | undefined;
  readonly service: LifeboatService;
  readonly logger: Logger;
  /** Aborted: stop taking backups, stop the running ones (they end interrupted), report them, return. */
  readonly signal: AbortSignal;
  /** Told of each backup taken and ended (the command prints them). */
  readonly onEvent?: ((line: string) => void) | undefined;
}

/** Progress is reported this often at most (and answers whether to stop). */
const PROGRESS_EVERY_MS = 1000;
/** Waits after a poll the server did not answer, growing to the last. */
const RETRY_MS = [500, 1000, 2000, 5000];
const REQUEST_TIMEOUT_MS = 60_000;

interface Running {
  readonly task: MoverTask;
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

/** One JSON call to a server; its error answers become their LifeboatError. */
async function call<T>(o: MoverOptions, server: string, path: string, body: unknown): Promise<T> {
  const url = new URL(`${server.replace(/\/+$/, '')}${path}`);
  const payload = Buffer.from(JSON.stringify(body));
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<T>((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json', 'content-length': payload.length },
        ...(o.ca ? { ca: o.ca } : {}),
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? {} : JSON.parse(text);
          } catch {
            return reject(new LifeboatError('LFB_ERR_SERVER_NO_ANSWER', `the server answered ${res.statusCode} with no JSON: ${text.slice(0, 200)}`));
          }
          if (res.statusCode !== undefined && res.statusCode < 300) return resolve(parsed as T);
          const e = parsed as { code?: string; message?: string };
          reject(errorFromCode(e.code, `the server: ${e.message ?? `HTTP ${res.statusCode}`}`, 'LFB_ERR_SERVER_NO_ANSWER'));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => reject(new LifeboatError('LFB_ERR_SERVER_NO_ANSWER', `${url.origin}: ${err.message}`)));
    req.end(payload);
  });
}

/** Errors that no retry mends: the mover's token or name is wrong. */
const FATAL: readonly ErrorCode[] = ['LFB_ERR_UNAUTHENTICATED', 'LFB_ERR_FORBIDDEN', 'LFB_ERR_INVALID_ARGUMENT', 'LFB_ERR_ROUTE_NOT_FOUND'];

export async function runMover(o: MoverOptions): Promise<void> {
  const session = randomUUID().replaceAll('-', '');
  const running = new Map<number, Running>();
  const base = `/movers/${encodeURIComponent(o.name)}`;
  // The disks are read here: a mover without the helper reads the holes of sparse images.
  if (nativeHelper() === null) o.logger.warn(`mover: ${NATIVE_HELPER_MISSING}`);
  // One warm pool of hashing and compression workers for every backup here, as the server's data mover keeps one.
  const pool = new BlockWorkerPool();
  const runner = new InProcessBackupRunner(o.service, pool);
  let failures = 0;
  let at = 0;
  // The server whose tasks run here: results and progress go to it, whichever server polls answer later.
  const server = (): string => o.servers[at % o.servers.length]!;
  // Cut off from the server for half its timeout: it is handing these backups to other movers, so they stop here.
  let lastOk = performance.now();
  let timeoutMs = 15_000;
  const watchdog = setInterval(() => {
    if (running.size === 0 || performance.now() - lastOk < timeoutMs / 2) return;
    o.logger.warn('mover: no word from the server for half its timeout: the backups here stop (they go to other movers)', { server: server() });
    for (const r of running.values()) r.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', `data mover ${o.name} lost the server`));
  }, 500);
  watchdog.unref();

  const start = (task: MoverTask): void => {
    const controller = new AbortController();
    const taskServer = server();
    let lastSent = 0;
    let latest: BackupProgress | undefined;
    let sending = false;
    const report = async (): Promise<void> => {
      if (sending || latest === undefined) return;
      sending = true;
      lastSent = performance.now();
      try {
        const r = await call<ProgressReply>(o, taskServer, `${base}/tasks/${task.id}/progress`, { session, ...latest });
        lastOk = performance.now();
        if (r.stop) controller.abort(errorFromCode(r.stop.code, r.stop.message, 'LFB_ERR_INTERRUPTED'));
      } catch (err) {
        // The server gave the task to another mover: this one's work would never be its run's.
        if (isLifeboatError(err, 'LFB_ERR_MOVER_TASK_NOT_FOUND')) controller.abort(err);
      } finally {
        sending = false;
      }
    };
    o.onEvent?.(`run ${task.run}: backup of ${task.job} (${task.repo}) started`);
    const done = runner
      .backup(task.repo, task.job, {
        signal: controller.signal,
        onProgress: (p) => {
          latest = p;
          if (performance.now() - lastSent >= PROGRESS_EVERY_MS) void report();
        },
        activeFull: task.activeFull,
        acceptSourceChange: task.acceptSourceChange,
        waitMs: task.waitMs,
        runId: task.run,
      })
      .then(
        (outcome) => ({ session, outcome: outcome as unknown as { result: Record<string, unknown>; changes: Record<string, unknown> } }),
        (err: unknown) => {
          const e = isLifeboatError(err) ? err : new LifeboatError('LFB_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
          return { session, error: { code: e.code, message: e.message } };
        },
      )
      .then(async (body) => {
        o.onEvent?.(`run ${task.run}: backup of ${task.job} ${'outcome' in body ? 'done' : `failed: ${body.error.message} [${body.error.code}]`}`);
        // The result is sent until the server takes it or says the task is not this mover's any more.
        for (let i = 0; ; i++) {
          try {
            await call(o, taskServer, `${base}/tasks/${task.id}/result`, body);
            return;
          } catch (err) {
            if (isLifeboatError(err, 'LFB_ERR_MOVER_TASK_NOT_FOUND') || i >= 5) {
              o.logger.warn('mover: the server did not take a result', { task: task.id, run: task.run, problem: String(err) });
              return;
            }
            await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(i, RETRY_MS.length - 1)]));
          }
        }
      })
      .finally(() => running.delete(task.id));
    running.set(task.id, { task, controller, done });
  };

  while (!o.signal.aborted) {
    let reply: PollReply;
    try {
      reply = await call<PollReply>(o, server(), `${base}/poll`, {
        session,
        ...(o.group ? { group: o.group } : {}),
        maxTasks: o.maxTasks,
        running: [...running.keys()],
      });
      if (failures > 0) o.logger.info('mover: a server answers again', { server: server() });
      failures = 0;
      lastOk = performance.now();
      timeoutMs = reply.timeoutMs;
    } catch (err) {
      if (isLifeboatError(err) && FATAL.includes(err.code)) {
        clearInterval(watchdog);
        await pool.close();
        throw err;
      }
      // A standby, or a server gone: the next one (the backups running here report to the server that gave them).
      if (isLifeboatError(err, 'LFB_ERR_STANDBY') || isLifeboatError(err, 'LFB_ERR_SERVER_NO_ANSWER')) at++;
      if (failures === 0) o.logger.warn('mover: no server takes polls now; polling again', { server: server(), problem: String(err) });
      await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]));
      continue;
    }
    for (const s of reply.stop) running.get(s.id)?.controller.abort(errorFromCode(s.code, s.message, 'LFB_ERR_INTERRUPTED'));
    for (const t of reply.tasks) if (!running.has(t.id) && !o.signal.aborted) start(t);
  }
  for (const r of running.values()) r.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', `data mover ${o.name} is stopping`));
  await Promise.allSettled([...running.values()].map((r) => r.done));
  clearInterval(watchdog);
  await pool.close();
}
