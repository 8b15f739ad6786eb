import { chmod, mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { LifeboatService } from '../app/service.js';
import { listenNear, serve, type RunningServer, type ServeOptions } from '../app/serve.js';
import { Authenticator, loadTlsFiles, selfSignedCertificate } from '../auth/index.js';
import { openCatalog, type Catalog, type RunRecord } from '../catalog/index.js';
import { LifeboatError, fromFsError } from '../core/errors.js';
import { startSpawner } from '../core/spawner.js';
import { createHttpApi, type ApiServer } from './http/api.js';
import { ServiceRuntime } from './runtime/service-runtime.js';
import { MoverHub } from './movers/mover-hub.js';
import { CatalogFreshness } from './catalog-freshness.js';
import { DataMover } from './runtime/data-mover.js';
import { Repository, loadJob, repositoryRoot } from '../repository/index.js';
import { runEndedLine } from './runtime/run-report.js';
import { handOff } from './runtime/hand-off.js';
import { postRunEnded } from './runtime/webhooks.js';
import type { ControlRuns } from '../app/control-runs.js';
import type { ControlLabReports } from '../app/control-lab-reports.js';
import { labReportsInCatalog } from './lab-reports.js';
import type { ControlFiles } from '../app/control-files.js';
import { FileSessions } from './file-sessions.js';
import { controlFiles } from './control-files.js';

export const DEFAULT_HTTP_PORT = 9443;

export interface ServiceOptions extends ServeOptions {
  /** The server's own folder: catalog (SQLite), TLS certificate, scheduler heartbeat. */
  readonly stateDir: string;
  /** A catalog other than the state folder's SQLite one (e.g. postgres://…). */
  readonly catalog?: string | undefined;
  /** undefined: DEFAULT_HTTP_PORT, or the next free one. */
  readonly httpPort?: number | undefined;
  readonly httpBind: string;
  /** `self-signed` (made at first start in the state folder), files, or none (plain HTTP, for loopback). */
  readonly tls: 'self-signed' | 'none' | { readonly certPath: string; readonly keyPath: string };
  readonly maxTasks?: number | undefined;
  /** Folders operators may restore and migrate into through the API (admins may name any path). */
  readonly targetFolders?: readonly string[] | undefined;
  /** How long a data mover may say nothing before its tasks go to another (default DEFAULT_MOVER_TIMEOUT_MS). */
  readonly moverTimeoutMs?: number | undefined;
  /** Waits between webhook tries (tests shorten them). */
  readonly webhookRetryDelaysMs?: readonly number[] | undefined;
  /** Run no jobs by schedule (the API and the CLI hand-off still run them). */
  readonly noScheduler?: boolean | undefined;
  /** Nice levels the backups' thread and its block workers run below the server (default DEFAULT_BACKUP_NICE; 0: the same priority). */
  readonly backupNice?: number | undefined;
  /** File-level recovery: a point's file session closes after this long unused (default 10 min). */
  readonly filesIdleTimeoutMs?: number | undefined;
}

/** Backups yield the CPU to the API, the scheduler and instant recovery's reads by this many nice levels. */
export const DEFAULT_BACKUP_NICE = 10;

export interface RunningService {
  readonly server: RunningServer;
  readonly catalog: Catalog;
  readonly runtime: ServiceRuntime;
  readonly http: { readonly url: string; readonly port: number };
  close(): Promise<void>;
}

/**
 * `lifeboat serve`: the instant-recovery server of a repository (src/app),
 * plus the service on top of it: the catalog, the scheduler's runtime running
 * the repository's jobs, and the authenticated HTTP API.
 */
export async function startService(opts: ServiceOptions): Promise<RunningService> {
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 }).catch((e: unknown) =>
    Promise.reject(fromFsError(e, 'creating the state folder', opts.stateDir)),
  );
  await chmod(opts.stateDir, 0o700).catch(() => undefined);
  // Backups the CLI hands over: answered once the runtime runs.
  let runs: ControlRuns | undefined;
  // SureBackup reports the CLI hands over: recorded once the catalog is open.
  let labReports: ControlLabReports | undefined;
  // File-level recovery: one set of file sessions for the HTTP API and the CLI's `lifeboat files` (through the control API).
  // The server, once it is up: its instant sessions' pool and caches are lent to the file sessions' exports.
  const started: { server?: RunningServer } = {};
  const fileSessions = new FileSessions({
    idleMs: opts.filesIdleTimeoutMs,
    clock: opts.clock,
    logger: opts.logger,
    sharedDecoding: async (root) =>
      started.server !== undefined && repositoryRoot(root) === started.server.repoRoot ? started.server.recovery.sharedDecoding() : undefined,
  });
  let files: ControlFiles | undefined;
  // A small process of its own that forks the data mover's helper processes (a run's storage daemon), so the whole
  // server is never forked (core/spawner.ts). It starts beside the server's ports and stops last, after the runs.
  const spawnerStarting = startSpawner({
    onExit: (why) => opts.logger.warn('serve: the spawner ended; helper processes are started directly from now on', { problem: why }),
  });
  let server: RunningServer;
  try {
    server = await serve({ ...opts, controlRuns: () => runs, controlLabReports: () => labReports, controlFiles: () => files });
  } catch (err) {
    const spawner = await spawnerStarting;
    if (!('problem' in spawner)) await spawner.stop();
    throw err;
  }
  const spawner = await spawnerStarting;
  if ('problem' in spawner) opts.logger.warn('serve: helper processes are started directly (the spawner did not start)', { problem: spawner.problem });
  const stopSpawner = async (): Promise<void> => {
    if (!('problem' in spawner)) await spawner.stop();
  };
  started.server = server;
  const closers: (() => Promise<unknown>)[] = [stopSpawner, () => server.close()];
  // Once, last started first: a second call waits for the first (the spawner, first in the list, must stop last).
  let closing: Promise<void> | undefined;
  const closeAll = (): Promise<void> =>
    (closing ??= (async () => {
      for (const c of [...closers].reverse()) await c().catch((err: unknown) => opts.logger.error('serve: stopping a part failed', { problem: String(err) }));
    })());
  try {
    const catalog = await openCatalog(opts.catalog ?? opts.stateDir, { clock: opts.clock });
    closers.push(() => catalog.close());
    labReports = labReportsInCatalog(catalog, server.repoRoot);
    const service = new LifeboatService(opts.clock);
    // The job's webhook, if it has one, hears of every ended run (in the background: a slow receiver never holds a run up).
    const notify = async (run: RunRecord): Promise<void> => {
      // job.json alone (showJob would scan every backup file of the job on this thread).
      const url = await Repository.open(run.repo)
        .then((r) => loadJob(r, run.job))
        .then(
          (j) => j.webhook,
          () => undefined,
        );
      if (url !== undefined) await postRunEnded(url, run, opts.logger, opts.webhookRetryDelaysMs);
    };
    // Backups run off this thread, warm for every run: a scheduled increment pays no module loading or worker start-up.
    const mover = new DataMover({
      logger: opts.logger,
      nice: opts.backupNice ?? DEFAULT_BACKUP_NICE,
      spawnerSocket: 'problem' in spawner ? undefined : spawner.socketPath,
    });
    closers.push(() => mover.close());
    await mover.start();
    const repo = server.repoRoot;
    // Jobs that name a data mover (`job set --mover`) run their backups on it; the others on the server's own thread.
    let leading = (): boolean => true;
    const movers = new MoverHub({
      local: mover,
      // A job that cannot be read fails its run with its own error (never a backup here of a job meant for a mover).
      moverOf: async (root, job) => (await loadJob(await Repository.open(root), job)).mover,
      leading: () => leading(),
      clock: opts.clock,
      logger: opts.logger,
      moverTimeoutMs: opts.moverTimeoutMs,
    });
    // Closed after the runtime (closers run last first): a run stopping on a mover still hears from it.
    closers.push(async () => movers.close());
    // One reader of jobs and points for the API and the runtime. A job one of this server's runs is writing keeps its
    // catalog copy until the run's work ends; the run then reads the job again before it is recorded as ended.
    let isRunning = (_root: string, _job: string): boolean => false;
    const freshness = new CatalogFreshness({ catalog, clock: opts.clock, writing: (root, job) => isRunning(root, job) });
    closers.push(() => freshness.close());
    const runtime = new ServiceRuntime({
      catalog,
      service,
      repos: [repo],
      stateDir: opts.stateDir,
      clock: opts.clock,
      logger: opts.logger,
      maxTasks: opts.maxTasks,
      schedules: opts.noScheduler !== true,
      runner: movers,
      // SureBackup jobs boot their labs as this server's own instant sessions.
      recovery: (root) => (root === repo ? server.recovery : undefined),
      beforeRunEnds: (root, job) => freshness.refresh(root, job),
      onRunEnded: (run: RunRecord) => {
        process.stderr.write(`${runEndedLine(run)}\n`);
        // A job's webhook is a backup job's: a SureBackup or copy job of the same name does not post to it.
        if (run.kind !== 'backup') return;
        void notify(run);
      },
    });
    isRunning = (root, job) => runtime.isRunning(root, job);
    leading = () => runtime.leading;
    const https =
      opts.tls === 'none'
        ? undefined
        : opts.tls === 'self-signed'
          ? await selfSignedCertificate(opts.stateDir, { clock: opts.clock, hostName: hostname() })
          : await loadTlsFiles(opts.tls.certPath, opts.tls.keyPath);
    const auth = new Authenticator(catalog, { clock: opts.clock });
    // Expired console logins leave the catalog hourly.
    const prune = setInterval(() => void auth.pruneSessions().catch(() => undefined), 3600_000).unref();
    closers.push(async () => clearInterval(prune));
    const api: ApiServer = await createHttpApi({
      service,
      repos: [repo],
      recovery: new Map([[repo, server.recovery]]),
      catalog,
      auth,
      runner: runtime,
      movers,
      clock: opts.clock,
      logger: opts.logger,
      https: https ? { cert: https.cert, key: https.key } : undefined,
      targetFolders: opts.targetFolders,
      freshness,
      fileSessions,
    });
    closers.push(() => api.close());
    files = controlFiles(fileSessions, repo, opts.logger);
    const port = await listenNear(
      async (p) => {
        await api.listen({ port: p, host: opts.httpBind });
        return (api.server.address() as AddressInfo).port;
      },
      opts.httpPort ?? DEFAULT_HTTP_PORT,
      opts.httpPort !== undefined,
      'HTTP API',
      opts.say,
    );
    const url = `${https ? 'https' : 'http'}://${opts.httpBind.includes(':') ? `[${opts.httpBind}]` : opts.httpBind}:${port}/api/v1`;
    await runtime.start();
    runs = handOff(runtime, catalog, repo);
    // The runtime stops first: its runs end recorded before the catalog closes.
    closers.push(() => runtime.close());
    opts.say(
      `HTTP API on ${url} (${https ? 'TLS' : 'plain HTTP'}); catalog ${opts.catalog ? 'as given' : `in ${opts.stateDir}`}; jobs ${opts.noScheduler ? 'by request only' : 'on their schedules'}${runtime.leading ? '' : ', standing by: another server sharing the catalog runs them'}`,
    );
    opts.logger.info('serve: service started', { http: url, stateDir: opts.stateDir, maxTasks: opts.maxTasks ?? 4 });
    return { server, catalog, runtime, http: { url, port }, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err instanceof LifeboatError ? err : new LifeboatError('LFB_ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  }
}
