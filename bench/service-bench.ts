/**
 * The service benchmark: a real `lifeboat serve` (its scheduler runtime,
 * SQLite catalog and HTTP API), two measurements in one run.
 *
 * 1. CBT incremental of a 1 GiB qcow2 of real files after ~5% of its 1 MiB
 *    blocks were rewritten through qemu-io, run by the server (API POST
 *    run-now): full and incremental, timed from the catalog's startedAt →
 *    endedAt and as wall time from the request to the `end` on its event stream.
 *    Target: incremental ≤ 10% of the full. For comparison the same change
 *    taken by `lifeboat backup` handed to the server, and by the CLI alone
 *    (no server: Node's start-up and module loading in every run). Several jobs
 *    on the one image, each with its own dirty bitmaps: BENCH_CBT_SAMPLES (5) of
 *    them run through the API, so the API's full and incremental are each a
 *    median of that many runs on a noisy machine. Each server has run one
 *    backup of another job before its timed runs, as a server in service has,
 *    and each timed run starts from the same state: the page cache written
 *    out, the image read into it, the server idle (see timedRuns).
 * 2. The list endpoints (runs with filters and paging, a job's points, the
 *    jobs) over a catalog of 100k runs and 10k points (filled before the
 *    server starts, by bench:catalog's fill), p50/p99 of a few hundred
 *    requests each, idle and while 4 backups of 256 MiB sources run (each
 *    started again as soon as it ends). Target: p99 < 20 ms. A third pass
 *    with the same 4 backups run by `lifeboat backup` processes of their own
 *    (another repository) tells the server's event loop from the machine.
 *
 *   npm run bench:service
 *   BENCH_RUNS=100000 BENCH_POINTS=10000 BENCH_SAMPLES=300 (the defaults)
 *   BENCH_SERVE_ARGS="--backup-nice 19": more flags for the servers, split at spaces (no quoting)
 *   BENCH_PROFILE=1: the servers run with --cpu-prof (profiles in
 *   bench-work/service-profile, with the phases' times) and report their
 *   event-loop delay, garbage-collector pauses and in-server request times
 *   in each phase (bench/loop-delay.ts); BENCH_PROFILE=loop: those without
 *   the profiler.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openCatalog } from '../src/catalog/open.js';
import { MiB, bin, fromMemory, work } from './bench-util.js';
import { fillCatalog, fillJobName, minutes, type CatalogShape } from './catalog-fill.js';
import { rewriteFivePercent } from './cbt-changes.js';
import { buildSampleImage } from './sample-image.js';
import { ApiClient, adminToken, catalogMs, settled, startServe, waitForRun, type RunView, type Served } from './service-server.js';
import { keepBackupsRunning, keepCliBackupsRunning, percentile, sampleEndpoints } from './service-load.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 100_000);
const POINTS = Number(process.env['BENCH_POINTS'] ?? 10_000);
const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 300);
const LOAD_JOBS = 4;
const LOAD_MIB = 256;
const PROFILE = process.env['BENCH_PROFILE'] === '1' || process.env['BENCH_PROFILE'] === 'loop';
/** BENCH_PROFILE=loop: the event loop, collector and request lines only, without the CPU profiler's own cost. */
const LOOP_ONLY = process.env['BENCH_PROFILE'] === 'loop';
/** How many jobs on the CBT image run through the API: the API's figures are their medians. */
const CBT_SAMPLES = Number(process.env['BENCH_CBT_SAMPLES'] ?? 5);
if (!Number.isInteger(CBT_SAMPLES) || CBT_SAMPLES < 1)
  throw new Error(`BENCH_CBT_SAMPLES must be a whole number from 1, not ${process.env['BENCH_CBT_SAMPLES']}`);
const apiJobs = Array.from({ length: CBT_SAMPLES }, (_, k) => `cbt-api-${k + 1}`);
const profileDir = join(work, 'service-profile');
const loopDelayFile = join(profileDir, 'loop-delay.txt');
const dir = join(work, 'service');
const repo = join(dir, 'repo');
/** The same 4 load jobs in a repository the server does not serve: backed up by CLI processes of their own. */
const otherRepo = join(dir, 'other-repo');
const stateDir = join(dir, 'state');
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

function lifeboat(args: string[]): { secs: number; out: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`lifeboat ${args.join(' ')} failed: ${r.stderr.toString()}`);
  return { secs: (performance.now() - t0) / 1000, out: r.stdout.toString() };
}

/** The 1 GiB raw image of real files (bench:methods' and BENCH_CBT_GIB=1 bench:cbt's), made once. */
function sampleImage(): string {
  const raw = join(work, 'methods.img');
  if (!existsSync(raw)) buildSampleImage(raw, 1024 * MiB, 700 * MiB, ['/usr/lib', '/usr/share', '/usr/bin', '/usr/libexec', '/usr/sbin', '/opt']);
  return raw;
}

/** `count` raw disks of `mib` MiB, slices of the sample image (real files, some free space). */
function loadSources(raw: string, count: number, mib: number): string[] {
  const buf = Buffer.alloc(MiB);
  return Array.from({ length: count }, (_, k) => {
    const path = join(dir, `load-${k}.img`);
    const from = openSync(raw, 'r');
    const to = openSync(path, 'w');
    for (let i = 0; i < mib; i++) {
      readSync(from, buf, 0, MiB, ((k * mib + i) % 1024) * MiB);
      writeSync(to, buf);
    }
    closeSync(from);
    closeSync(to);
    return path;
  });
}

interface Timed {
  /** Catalog startedAt → endedAt, ms. */
  catalog: number;
  /** Request (or command) → end, ms. */
  wall: number;
  run: RunView;
}

/** A run asked for through the API (POST run-now), followed to its end. */
async function runByApi(api: ApiClient, repoName: string, job: string): Promise<Timed> {
  const t0 = performance.now();
  const { body } = await api.call<RunView>('POST', `/api/v1/repositories/${repoName}/jobs/${job}/run`, 202);
  const { run, seenAt } = await waitForRun(api, body.id);
  if (run.state !== 'succeeded') throw new Error(`run ${run.id} of ${job}: ${run.state} ${run.errorCode ?? ''} ${run.errorMessage ?? ''}`);
  return { catalog: catalogMs(run), wall: seenAt - t0, run };
}

/** The warm-up runs' seconds, one per server. */
const warmUpSeconds: number[] = [];

/**
 * One backup of another job (load-0, 256 MiB of raw file) before the timed runs: a server in service has run
 * backups before, while the first run in a new process also pays for Node compiling the backup path (the job's
 * scan, the block pipeline, the commit; not the CBT source's QMP steps, which only a qcow2 job takes).
 */
async function warmUp(api: ApiClient, repoName: string): Promise<void> {
  warmUpSeconds.push((await runByApi(api, repoName, 'load-0')).catalog / 1000);
}

/**
 * Runs one after another, each from the same state: the server idle again, then the machine's page cache written
 * out (`sync`) and the CBT image and the job's files read into it. So no earlier run's tail is in a run's time (its
 * job read again, its rows, the write-back of the 400 MB an earlier full wrote, which took the CPU and the disk from
 * the next runs), and the full and the incremental both read from memory: this machine's kernel pages out memory
 * unused for a minute (DAMON), which otherwise left the incremental's blocks on the disk and the just-converted
 * full's in memory. Each run's own writes, fsync included, are in its time.
 */
async function timedRuns(served: Served, jobs: readonly string[], run: (job: string) => Promise<Timed>): Promise<Timed[]> {
  const timed: Timed[] = [];
  for (const job of jobs) {
    await settled(served);
    sameStart(job);
    timed.push(await run(job));
  }
  return timed;
}

/** The CBT image, set by main() once made. */
let cbtImage = '';

/** The page cache written out, and the CBT image and the job's files (its previous point) read into it (see timedRuns). */
function sameStart(job: string): void {
  fromMemory([cbtImage, join(repo, 'jobs', job)]);
}

/** `lifeboat backup` while the server runs: handed to it; its run read back from the catalog. */
async function runByHandOff(api: ApiClient, job: string): Promise<Timed> {
  const r = lifeboat(['backup', job, '--repo', repo, '--json']);
  const { serverRun } = JSON.parse(r.out) as { serverRun?: number };
  if (serverRun === undefined) throw new Error(`lifeboat backup ${job} ran by itself, not through the server`);
  const { body } = await api.call<{ run: RunView }>('GET', `/api/v1/runs/${serverRun}?logLimit=1`);
  return { catalog: catalogMs(body.run), wall: r.secs * 1000, run: body.run };
}

/** `lifeboat backup` with no server: wall time and the run's own `seconds` (without Node's start-up). */
function runByCli(job: string): { wall: number; inProcess: number; changeMethod: string; blocksStored: number } {
  const r = lifeboat(['backup', job, '--repo', repo, '--json']);
  const j = JSON.parse(r.out) as { seconds: number; changes?: { method: string }[]; serverRun?: number; blocksStored: number };
  if (j.serverRun !== undefined) throw new Error('a server still runs for the repository');
  return { wall: r.secs * 1000, inProcess: j.seconds * 1000, changeMethod: j.changes?.map((c) => c.method).join(',') ?? '?', blocksStored: j.blocksStored };
}

const pct = (inc: number, full: number) => `${((inc / full) * 100).toFixed(1)}%`;
const s = (ms: number) => (ms / 1000).toFixed(2);

/** How long each server took to finish starting (settled) before the bench's first request. */
const settleMs: number[] = [];

async function withServer<T>(token: string, fn: (api: ApiClient, repoName: string, served: Served) => Promise<T>): Promise<T> {
  const nodeArgs = PROFILE
    ? ['--import', pathToFileURL(resolve('dist/bench/loop-delay.js')).href, ...(LOOP_ONLY ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`])]
    : [];
  const served = await startServe(repo, stateDir, nodeArgs);
  const api = new ApiClient(served.base, token);
  try {
    const { body } = await api.call<{ repositories: { name: string; root: string }[] }>('GET', '/api/v1/repositories');
    settleMs.push(await settled(served));
    return await fn(api, body.repositories[0]!.name, served);
  } finally {
    api.close();
    await served.stop();
  }
}

/** A phase's start and end (epoch ms), written beside the profiles. */
function phase(name: string, from: number, to: number): void {
  if (PROFILE) appendFileSync(join(profileDir, 'phases.txt'), `${name} ${from} ${to}\n`);
}

/** The server's event-loop delay over a phase: the worst 500 ms interval's p99, and the longest delay (ms). */
function loopDelay(from: number, to: number): string {
  // Each line: at, delay p50 p99 max, "gc" count total max, "req" count p99 max (bench/loop-delay.ts).
  const lines = readFileSync(loopDelayFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ').map(Number))
    .filter(([at]) => at! > from && at! <= to + 500);
  const p50s = lines.map((l) => l[1]!).sort((a, b) => a - b);
  const worst = (i: number) => Math.max(0, ...lines.map((l) => l[i] ?? 0)).toFixed(1);
  const sum = (i: number) => lines.reduce((t, l) => t + (l[i] ?? 0), 0);
  return (
    `median of intervals' p50 ${percentile(p50s, 50).toFixed(1)}, worst interval p99 ${worst(2)}, longest ${worst(3)}; ` +
    `GC ${sum(5)} pauses, ${sum(6).toFixed(0)} ms, longest ${worst(7)}; requests in the server ${sum(9)}, worst interval p99 ${worst(10)}, longest ${worst(11)}`
  );
}

async function main(): Promise<void> {
  if (PROFILE) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    process.env['BENCH_LOOP_DELAY_FILE'] = loopDelayFile;
  }
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  console.log(`service benchmark ${new Date().toISOString()}, commit ${commit}, ${cpus().length} CPUs, load average ${load()} at the start`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const raw = sampleImage();
  const img = join(dir, 'cbt.qcow2');
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, img]);
  const sources = loadSources(raw, LOAD_JOBS, LOAD_MIB);
  lifeboat(['repo', 'init', repo]);
  for (const job of [...apiJobs, 'cbt-handoff', 'cbt-cli']) lifeboat(['job', 'create', job, '--repo', repo, '--disk', img, '--cbt']);
  lifeboat(['repo', 'init', otherRepo]);
  const loadJobs = sources.map((src, k) => {
    lifeboat(['job', 'create', `load-${k}`, '--repo', repo, '--disk', src]);
    lifeboat(['job', 'create', `load-${k}`, '--repo', otherRepo, '--disk', src]);
    return `load-${k}`;
  });

  // The catalog, filled before the server opens it: the runs and points of 50 jobs, half in this repository.
  const shape: CatalogShape = { runs: RUNS, points: POINTS, jobs: 50, repos: [repo, '/srv/backup/elsewhere'] };
  const catalog = await openCatalog(stateDir);
  try {
    await fillCatalog(catalog, shape, 1);
  } finally {
    await catalog.close();
  }
  const token = await adminToken(stateDir);

  // Fulls: the CLI alone first (no server yet), then through the server.
  cbtImage = img;
  sameStart('cbt-cli');
  const cliFull = runByCli('cbt-cli');
  const [apiFulls, handFull] = await withServer(token, async (api, repoName, served) => {
    await warmUp(api, repoName);
    const fulls = await timedRuns(served, apiJobs, (job) => runByApi(api, repoName, job));
    const [hand] = await timedRuns(served, ['cbt-handoff'], (job) => runByHandOff(api, job));
    return [fulls, hand!] as const;
  });
  const { rewritten, blocks } = rewriteFivePercent(raw, img, join(dir, 'changes'));
  sameStart('cbt-cli');
  const cliInc = runByCli('cbt-cli');
  const loadAtCbt = load();
  const { apiIncs, handInc, latency, loadAtIdle, loadAtBusy, busy, loadAtOther, other } = await withServer(token, async (api, repoName, served) => {
    await warmUp(api, repoName);
    const apiIncs = await timedRuns(served, apiJobs, (job) => runByApi(api, repoName, job));
    const handInc = (await timedRuns(served, ['cbt-handoff'], (job) => runByHandOff(api, job)))[0]!;
    const middle = Math.floor(RUNS / 2);
    const endpoints = [
      ['GET /runs (newest 50)', '/api/v1/runs'],
      ['GET /runs?job', `/api/v1/runs?job=${fillJobName(8, shape)}`],
      ['GET /runs?repo&state=failed', `/api/v1/runs?repo=${repoName}&state=failed`],
      ['GET /runs?job&state×2&since', `/api/v1/runs?job=${fillJobName(4, shape)}&state=failed&state=warning&since=${minutes(middle)}`],
      ['GET /runs?before (deep page)', `/api/v1/runs?before=${middle}&limit=50`],
      ['GET /runs?limit=1000', '/api/v1/runs?limit=1000'],
      [`GET /repositories/R/jobs (${apiJobs.length + 2 + LOAD_JOBS} jobs)`, `/api/v1/repositories/${repoName}/jobs`],
      ['GET …/jobs/cbt-api-1/points', `/api/v1/repositories/${repoName}/jobs/cbt-api-1/points`],
    ] as const;
    const loadAtIdle = load();
    const idleFrom = Date.now();
    const idle = await sampleEndpoints(api, endpoints, SAMPLES);
    phase('idle', idleFrom, Date.now());
    // The backups are started and followed by a client of their own (one connection, as another console or a
    // script holds it): on the measuring client's one connection a sample would wait for their requests first.
    const loadApi = new ApiClient(served.base, token);
    const stopBackups = keepBackupsRunning(loadApi, repoName, loadJobs);
    // Let all 4 get going before the first sample.
    await new Promise((r) => setTimeout(r, 1500));
    const busyFrom = Date.now();
    const during = await sampleEndpoints(api, endpoints, SAMPLES);
    phase('busy', busyFrom, Date.now());
    const loadAtBusy = load();
    const busy = await stopBackups().finally(() => loadApi.close());
    const stopCliBackups = keepCliBackupsRunning(loadJobs, otherRepo);
    await new Promise((r) => setTimeout(r, 1500));
    const otherFrom = Date.now();
    const elsewhere = await sampleEndpoints(api, endpoints, SAMPLES);
    phase('other-processes', otherFrom, Date.now());
    const loadAtOther = load();
    const other = await stopCliBackups();
    return {
      loadAtOther,
      other,
      apiIncs,
      handInc,
      loadAtIdle,
      loadAtBusy,
      busy,
      latency: endpoints.map(([label]) => ({ label, idle: idle.get(label)!, during: during.get(label)!, elsewhere: elsewhere.get(label)! })),
    };
  });

  for (const [what, t] of [
    ...apiFulls.map((t) => ['API full', t] as const),
    ...apiIncs.map((t) => ['API incremental', t] as const),
    ['hand-off incremental', handInc] as const,
  ])
    if (t.run.changeMethod !== (what === 'API full' ? 'full' : 'cbt')) console.log(`  note: the ${what} found its changes by ${t.run.changeMethod}`);
  const median = (xs: readonly number[]): number => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  /** The API's runs as one figure each way: their medians, and the run whose incremental is the median one (the lower middle one for an even count). */
  const apiFull = { catalog: median(apiFulls.map((t) => t.catalog)), wall: median(apiFulls.map((t) => t.wall)) };
  const apiInc = { catalog: median(apiIncs.map((t) => t.catalog)), wall: median(apiIncs.map((t) => t.wall)) };
  const medianInc = [...apiIncs].sort((a, b) => a.catalog - b.catalog)[Math.floor((apiIncs.length - 1) / 2)]!;

  console.log(`\n1. CBT incremental, 1 GiB qcow2 of real files, ${rewritten} of ${blocks} 1 MiB blocks rewritten (load average ${loadAtCbt})`);
  console.log(`${'how'.padEnd(44)}${'full s'.padStart(8)}${'incr s'.padStart(9)}${'incr/full'.padStart(11)}`);
  const row = (how: string, full: number, inc: number) =>
    console.log(`${how.padEnd(44)}${s(full).padStart(8)}${s(inc).padStart(9)}${pct(inc, full).padStart(11)}`);
  row(`server, API run-now: catalog start→end${CBT_SAMPLES > 1 ? ' *' : ''}`, apiFull.catalog, apiInc.catalog);
  row(`server, API run-now: request→end seen${CBT_SAMPLES > 1 ? ' *' : ''}`, apiFull.wall, apiInc.wall);
  row('lifeboat backup handed to the server: catalog', handFull.catalog, handInc.catalog);
  row('lifeboat backup handed to the server: wall', handFull.wall, handInc.wall);
  row('lifeboat backup alone (no server): wall', cliFull.wall, cliInc.wall);
  row('lifeboat backup alone: in-process seconds', cliFull.inProcess, cliInc.inProcess);
  if (CBT_SAMPLES > 1)
    console.log(
      `  * medians of ${CBT_SAMPLES} jobs' runs; each job's full and incremental (catalog, s): ${apiFulls.map((f, k) => `${s(f.catalog)} / ${s(apiIncs[k]!.catalog)} (${pct(apiIncs[k]!.catalog, f.catalog)})`).join(', ')}`,
    );
  const queued = (t: Timed) => Date.parse(t.run.startedAt!) - Date.parse(t.run.queuedAt);
  console.log(`  API run-now, queued→started: full ${apiFulls.map(queued).join('/')} ms, incremental ${apiIncs.map(queued).join('/')} ms`);
  console.log(
    `  each server had finished starting (settled ${settleMs.map((ms) => `${Math.round(ms)} ms`).join(', ')} after it listened) and had run one backup of load-0 (${warmUpSeconds.map((x) => `${x.toFixed(2)} s`).join(', ')}) before its timed runs, each started once the page cache was written out, the image read into it and the server idle again`,
  );
  console.log(
    `  incremental steps in the server (ms, the median run): ${JSON.stringify(medianInc.run.steps)}; read ${(medianInc.run.bytesRead / 1e6).toFixed(0)} MB`,
  );
  // Zero blocks cost a full next to nothing (never hashed or compressed), so the rewritten blocks are a larger share of its work.
  console.log(
    `  the full hashed and compressed ${cliFull.blocksStored} blocks with data; the ${rewritten} rewritten are ${pct(rewritten, cliFull.blocksStored)} of that work, the incremental's share before its fixed steps`,
  );
  console.log('  target: server incremental ≤ 10% of the full');

  console.log(`\n2. list endpoints over ${RUNS} runs and ${POINTS} points (SQLite), ${SAMPLES} requests each, one keep-alive connection, ms`);
  console.log(`   idle: nothing else in the server (load average ${loadAtIdle})`);
  console.log(
    `   busy: ${LOAD_JOBS} backups of ${LOAD_MIB} MiB in the server, each started again when it ends (load average ${loadAtBusy}; ${busy.runs} runs, ${(busy.bytesRead / 1e9).toFixed(1)} GB read)`,
  );
  console.log(`   other: the same 4 backups by lifeboat backup processes of their own, another repository (load average ${loadAtOther}; ${other.runs} runs)`);
  console.log(
    `${'endpoint'.padEnd(36)}${'idle p50'.padStart(9)}${'p99'.padStart(7)}${'max'.padStart(7)}${'busy p50'.padStart(9)}${'p99'.padStart(7)}${'max'.padStart(7)}${'other p50'.padStart(10)}${'p99'.padStart(7)}${'max'.padStart(7)}`,
  );
  const f = (x: number, w: number) => x.toFixed(1).padStart(w);
  for (const l of latency)
    console.log(
      `${l.label.padEnd(36)}${f(l.idle.p50, 9)}${f(l.idle.p99, 7)}${f(l.idle.max, 7)}${f(l.during.p50, 9)}${f(l.during.p99, 7)}${f(l.during.max, 7)}${f(l.elsewhere.p50, 10)}${f(l.elsewhere.p99, 7)}${f(l.elsewhere.max, 7)}`,
    );
  console.log('  target: p99 < 20 ms while 4 backups run (busy)');
  if (PROFILE) {
    for (const line of readFileSync(join(profileDir, 'phases.txt'), 'utf8').trim().split('\n')) {
      const [name, from, to] = line.split(' ');
      console.log(`  server event-loop delay, ${name} (ms): ${loopDelay(Number(from), Number(to))}`);
    }
    console.log(`  CPU profiles of the servers and the phases' times in ${profileDir}`);
  }
  rmSync(dir, { recursive: true, force: true });
}

await main();
