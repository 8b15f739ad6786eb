/**
 * The console benchmark: how fast the web console's dashboard and a job's
 * timeline are ready in Chromium when the server holds 200 jobs, 10k restore
 * points and 100k runs, and how many compressed bytes of JS and CSS each
 * page loads.
 *
 * The set is real where the API reads the repository: 200 jobs with 50
 * points each, made by in-process LifeboatService backups of tiny disks
 * (1 MiB, 256 KiB blocks; a fifth of the jobs reverse incremental, so they
 * have rollbacks; an active full every 10th point, so 5 chains a job; GFS
 * on for the forward ones). The 100k runs are written into the catalog by bench/catalog-fill.ts
 * under the same job names. The set is made once into bench-work/console
 * and reused by later runs (delete the folder to make it again).
 *
 * Then a real `lifeboat serve` (plain HTTP on loopback, no scheduler) and
 * Debian's Chromium (puppeteer-core): log in through the form, then load
 * each page LOADS times as a new navigation. Two times per load, both from
 * the navigation's start (performance.timeOrigin):
 *   - domInteractive: Chromium's navigation timing (PerformanceNavigationTiming);
 *   - data drawn: when the page first shows the API's data (the dashboard's
 *     job rows; the timeline's point marks), seen by a MutationObserver put
 *     in the page before its scripts run. This is the number the target
 *     (< 500 ms) applies to: a page is of use once its data is on screen.
 * Each page is loaded LOADS times with the browser cache (a revisit) and
 * LOADS times with the cache off (a first visit); medians are reported. The
 * bytes are the encoded (compressed) bodies of every .js and .css the page
 * loaded, from Resource Timing on a load with the cache off, and the
 * content-encoding they came with (the server sends the .br or .gz beside
 * each file as the browser accepts); the brotli size of the same files, from
 * dist/console's .br files, is printed beside them. The first dashboard after
 * the server started (it checks its catalog against 200 job folders) is
 * timed on its own, from the login's click, and not counted in the medians.
 *
 *   npm run bench:console
 *   BENCH_LOADS=5 (the default), BENCH_JOB=vm-07 (the timeline's job);
 *   BENCH_JOBS=200, BENCH_POINTS_PER_JOB=50, BENCH_RUNS=100000 (a smaller set
 *   for a quick look; BENCH_DIR=… keeps it apart from the real one)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { LifeboatService } from '../src/app/index.js';
import { openCatalog } from '../src/catalog/open.js';
import { DEFAULT_COMPRESSION } from '../src/compress/index.js';
import type { Clock } from '../src/core/clock.js';
import { work } from './bench-util.js';
import { fillCatalog, fillJobName, type CatalogShape } from './catalog-fill.js';
import { lifeboatWithInput, startServe } from './service-server.js';

const JOBS = Number(process.env['BENCH_JOBS'] ?? 200);
const POINTS_PER_JOB = Number(process.env['BENCH_POINTS_PER_JOB'] ?? 50);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 100_000);
const LOADS = Number(process.env['BENCH_LOADS'] ?? 5);
const DISK_BYTES = 1024 * 1024;
const BLOCK = 256 * 1024;
const HOURS_BETWEEN_POINTS = 12;
const USER = 'bench';
const PASSWORD = 'bench-console-password-1234';

const dir = join(work, 'console');
const repo = join(dir, 'backups');
const stateDir = join(dir, 'state');
const disks = join(dir, 'disks');
const madeFile = join(dir, 'made.json');
const SCREENSHOTS = resolve('test-output/console');
const SHAPE: CatalogShape = { runs: RUNS, points: 0, jobs: JOBS, repos: [repo] };
const jobName = (j: number): string => fillJobName(j, SHAPE);
const TIMELINE_JOB = process.env['BENCH_JOB'] ?? jobName(7);

/** A clock the maker moves forward between one job's backups. */
class SteppedClock implements Clock {
  constructor(private at: number) {}
  now(): Date {
    return new Date(this.at);
  }
  step(ms: number): void {
    this.at += ms;
  }
}

async function inParallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Bytes that change with the seed: the part of a disk each backup rewrites. */
function noise(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

/** 200 jobs with 50 real points each, and 100k runs in the catalog; made once and reused. */
async function makeSet(): Promise<void> {
  const want = JSON.stringify({ jobs: JOBS, points: POINTS_PER_JOB, runs: RUNS });
  if (existsSync(madeFile) && readFileSync(madeFile, 'utf8') === want) {
    console.log(`  reusing the set in ${dir}`);
    return;
  }
  const t0 = performance.now();
  const start = Date.now() - POINTS_PER_JOB * HOURS_BETWEEN_POINTS * 3600_000;
  // A making that stopped half-way goes on: finished jobs stay, a half-made one is made again.
  const resume = existsSync(join(repo, 'jobs'));
  if (!resume) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(disks, { recursive: true });
    await new LifeboatService(new SteppedClock(start)).initRepository(repo, BLOCK, DEFAULT_COMPRESSION);
  }
  const made = resume ? new Set(await new LifeboatService(new SteppedClock(start)).listJobs(repo)) : new Set<string>();
  await inParallel(JOBS, 2, async (j) => {
    const clock = new SteppedClock(start + j * 60_000);
    const service = new LifeboatService(clock);
    if (made.has(jobName(j))) {
      if ((await service.points(repo, jobName(j))).points.length === POINTS_PER_JOB) return;
      await service.deleteJob(repo, jobName(j), { withPoints: true });
    }
    const disk = join(disks, `${jobName(j)}.img`);
    writeFileSync(disk, noise(j + 1, DISK_BYTES));
    const reverse = j % 5 === 4;
    await service.createJob(repo, {
      name: jobName(j),
      disks: [disk],
      method: reverse ? 'reverse' : 'forward',
      retainPoints: POINTS_PER_JOB + 10,
      activeFullDays: [],
      // GFS keeps fulls of forward chains (a reverse chain's full always moves to its newest point).
      ...(reverse ? {} : { gfs: { weekly: 4, monthly: 2, yearly: 1 } }),
    });
    for (let k = 0; k < POINTS_PER_JOB; k++) {
      if (k > 0) {
        // Rewrite 1 to 4 of the disk's 4 blocks' first 64 KiB: increments of different sizes.
        const buf = readFileSync(disk);
        for (let b = 0; b < 1 + ((j + k) % 4); b++) noise(j * 1000 + k * 10 + b, 64 * 1024).copy(buf, ((k + b) % 4) * BLOCK);
        writeFileSync(disk, buf);
      }
      await service.backup(repo, jobName(j), { activeFull: k > 0 && k % 10 === 0 });
      clock.step(HOURS_BETWEEN_POINTS * 3600_000);
    }
    if (j % 20 === 19) console.log(`  ${j + 1} jobs made (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  });
  const catalog = await openCatalog(stateDir);
  try {
    await fillCatalog(catalog, SHAPE, 1);
  } finally {
    await catalog.close();
  }
  await lifeboatWithInput(['user', 'add', USER, '--role', 'admin', '--state-dir', stateDir, '--password-stdin'], `${PASSWORD}\n`);
  writeFileSync(madeFile, want);
  console.log(`  made ${JOBS} jobs × ${POINTS_PER_JOB} points and ${RUNS} runs in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

interface Load {
  domInteractive: number;
  dataDrawn: number;
  /** Encoded (compressed) bytes of the .js and .css the page loaded, and their URLs. */
  bytes: number;
  files: string[];
}

/**
 * Put in every document before its scripts run: records when `selector`
 * first matches (performance.now(), ms from the navigation's start) in
 * window.__drawnAt. Set through the DevTools protocol, so the page's CSP
 * (script-src 'self') does not apply to it.
 */
function watchFor(selector: string): void {
  const w = window as unknown as { __drawnAt?: number };
  const look = (): boolean => {
    if (w.__drawnAt === undefined && document.querySelector(selector) !== null) w.__drawnAt = performance.now();
    return w.__drawnAt !== undefined;
  };
  const mo = new MutationObserver(() => {
    if (look()) mo.disconnect();
  });
  mo.observe(document, { childList: true, subtree: true, attributes: true });
}

async function load(page: Page, url: string, selector: string): Promise<Load> {
  await page.goto('about:blank');
  const script = await page.evaluateOnNewDocument(watchFor, selector);
  try {
    await page.goto(url, { waitUntil: 'domcontentloaded' });
    await page
      .waitForFunction(() => (window as unknown as { __drawnAt?: number }).__drawnAt !== undefined, { timeout: 30_000, polling: 50 })
      .catch(async (err: unknown) => {
        const text = await page.evaluate(() => document.querySelector('main')?.textContent ?? '').catch(() => '');
        throw new Error(`${url}: nothing matched ${selector} in 30 s; the page shows: ${text.slice(0, 500)}`, { cause: err });
      });
    // Let lazily loaded chunks load before the resources are counted: until no new resource for 300 ms
    // (not network idle: the dashboard keeps an event stream open).
    let seen = -1;
    for (let i = 0; i < 20; i++) {
      const now = await page.evaluate(() => performance.getEntriesByType('resource').length);
      if (now === seen) break;
      seen = now;
      await new Promise((r) => setTimeout(r, 300));
    }
    return await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const assets = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter((r) => /\.(js|css)(\?|$)/.test(r.name));
      return {
        domInteractive: nav.domInteractive,
        dataDrawn: (window as unknown as { __drawnAt: number }).__drawnAt,
        bytes: assets.reduce((a, r) => a + r.encodedBodySize, 0),
        files: assets.map((r) => new URL(r.name).pathname),
      };
    });
  } finally {
    await page.removeScriptToEvaluateOnNewDocument(script.identifier);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** Brotli bytes of the same files as dist/console holds them (what Chromium gets over HTTPS). */
function brotliBytes(files: readonly string[]): number {
  return files.reduce((a, f) => {
    const br = join(resolve('dist/console'), `${f}.br`);
    return a + (existsSync(br) ? statSync(br).size : 0);
  }, 0);
}

/** Logs in through the form; resolves when the dashboard it lands on has drawn its data, with the ms from the click to then. */
async function login(page: Page, base: string, drawn: string): Promise<number> {
  await page.goto(`${base}/`);
  await page.waitForSelector('input[name=username]');
  await page.type('input[name=username]', USER);
  await page.type('input[name=password]', PASSWORD);
  const t0 = performance.now();
  await Promise.all([page.waitForSelector(drawn, { timeout: 60_000 }), page.click('button[type=submit]')]);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  console.log(`console benchmark ${new Date().toISOString()}, commit ${commit}, ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(2)}`);
  await makeSet();
  const served = await startServe(repo, stateDir);
  // The server's errors, shown if a page does not draw (an API answer of 500 says only that the log has the details).
  const serverErrors: string[] = [];
  const onServerOutput = (d: Buffer): void => {
    for (const line of d.toString().split('\n')) if (/\b(error|ERROR)\b/.test(line)) serverErrors.push(line);
  };
  served.proc.stdout?.on('data', onServerOutput);
  served.proc.stderr?.on('data', onServerOutput);
  let browser: Browser | undefined;
  try {
    browser = await puppeteer.launch({
      executablePath: process.env['CHROMIUM'] ?? '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    const repoName = basename(repo);
    const encodings = new Set<string>();
    // Answers >= 400 and page errors, shown if a page does not draw (a build that replaced dist/console under the server: 404s).
    const pageProblems: string[] = [];
    page.on('response', (r) => {
      if (/\.(js|css)$/.test(new URL(r.url()).pathname)) encodings.add(r.headers()['content-encoding'] ?? 'identity');
      if (r.status() >= 400) pageProblems.push(`${r.status()} ${r.url()}`);
    });
    page.on('pageerror', (e) => pageProblems.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
    const pages = [
      // The dashboard is drawn when its jobs' rows are (each job's row links to the job).
      { name: 'dashboard', url: `${served.base}/#/`, selector: `main a[href^="#/jobs/${repoName}/"]` },
      { name: `timeline of ${TIMELINE_JOB}`, url: `${served.base}/#/jobs/${repoName}/${TIMELINE_JOB}/points`, selector: '.points-page[data-ready] .tl-point' },
    ];
    const firstMs = await login(page, served.base, pages[0]!.selector);
    console.log(`  login → dashboard drawn, the first after the server started: ${firstMs.toFixed(0)} ms (not counted below)`);
    console.log(`\n${LOADS} loads of each page, 1280×800, ms from the navigation's start (median; min–max)`);
    console.log(
      `${'page'.padEnd(22)}${'cache'.padEnd(7)}${'domInteractive'.padStart(22)}${'data drawn'.padStart(22)}${'JS+CSS sent'.padStart(13)}${'(brotli)'.padStart(10)}`,
    );
    for (const p of pages) {
      for (const cache of [true, false]) {
        await page.setCacheEnabled(cache);
        const loads: Load[] = [];
        for (let i = 0; i < LOADS; i++)
          loads.push(
            await load(page, p.url, p.selector).catch((err: unknown) => {
              throw new Error(`${String(err)}\nthe page's problems:\n${pageProblems.join('\n')}\nthe server's errors:\n${serverErrors.join('\n')}`, {
                cause: err,
              });
            }),
          );
        const cold = loads[loads.length - 1]!;
        const range = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
        console.log(
          `${p.name.padEnd(22)}${(cache ? 'on' : 'off').padEnd(7)}${range(loads.map((l) => l.domInteractive)).padStart(22)}${range(loads.map((l) => l.dataDrawn)).padStart(22)}${
            cache ? ''.padStart(23) : `${(cold.bytes / 1000).toFixed(1)} kB`.padStart(13) + `${(brotliBytes(cold.files) / 1000).toFixed(1)} kB`.padStart(10)
          }`,
        );
        if (!cache) console.log(`${''.padEnd(29)}files: ${cold.files.join(' ')}`);
      }
    }
    console.log(`  JS and CSS came with content-encoding: ${[...encodings].join(', ')}`);
    console.log('  targets: data drawn < 500 ms (median), compressed JS+CSS < 250 KB per page');
    // Screenshots of a full set's pages (the tests' jobs have a few points): the dashboard, a forward job's timeline (GFS flags, 5 chains) and a reverse one's (rollbacks).
    await page.setCacheEnabled(true);
    mkdirSync(SCREENSHOTS, { recursive: true });
    const shots: [string, string, string][] = [
      ['bench-dashboard', pages[0]!.url, pages[0]!.selector],
      ['bench-timeline-forward', pages[1]!.url, pages[1]!.selector],
      ['bench-timeline-reverse', `${served.base}/#/jobs/${repoName}/${jobName(4)}/points`, pages[1]!.selector],
    ];
    for (const [name, url, selector] of shots) {
      await load(page, url, selector);
      await page.waitForSelector('.retention-plan', { timeout: 10_000 }).catch(() => undefined);
      await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
    }
    console.log(`  screenshots: ${shots.map(([n]) => `${n}.png`).join(', ')} in ${SCREENSHOTS}`);
  } finally {
    await browser?.close();
    await served.stop();
  }
}

await main();
