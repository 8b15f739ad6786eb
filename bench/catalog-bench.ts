/**
 * Catalog benchmark: 100k runs and 10k points, then the list queries the API
 * serves (runs with and without filters, a deep page, one job's points), each
 * timed many times: p50 and p99 in milliseconds, once idle and once while 4
 * writers record runs the way 4 running backups do (log lines, progress).
 * The target is under 20 ms at p99 at the API; this is the catalog's
 * share of it.
 *
 *   npm run bench:catalog                      SQLite, and PostgreSQL 15 when run as root with Debian's postgresql
 *   npm run bench:catalog -- --sqlite-only      (or --postgres-only)
 *   BENCH_RUNS=100000 BENCH_POINTS=10000 BENCH_SAMPLES=300 (the defaults)
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Catalog, RunFilter } from '../src/catalog/catalog.js';
import { openCatalog } from '../src/catalog/open.js';
import { PG_BIN, startPostgresCluster } from '../src/testing/postgres-cluster.js';
import { fillCatalog, fillJobName, fillRepoOf, minutes, type CatalogShape } from './catalog-fill.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 100_000);
const POINTS = Number(process.env['BENCH_POINTS'] ?? 10_000);
const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 300);
const JOBS = 50;
const WRITERS = 4;
const work = resolve(process.env['BENCH_DIR'] ?? 'bench-work');

const SHAPE: CatalogShape = { runs: RUNS, points: POINTS, jobs: JOBS, repos: ['/srv/backup/repo-0', '/srv/backup/repo-1'] };
const jobName = (i: number) => fillJobName(i, SHAPE);
const repoOf = (i: number) => fillRepoOf(i, SHAPE);
const fill = (catalog: Catalog, width: number) => fillCatalog(catalog, SHAPE, width);

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function timeQuery(run: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 20; i++) await run();
  const ms: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await run();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

/** 4 backups' worth of catalog writes: a run each, progress and 10 log lines every 50 ms. */
function startWriters(catalog: Catalog): () => Promise<number> {
  let stop = false;
  let writes = 0;
  const loops = Array.from({ length: WRITERS }, async (_, w) => {
    const run = await catalog.createRun({ repo: repoOf(w), job: jobName(w), trigger: 'schedule', attempt: 1, retryOf: null, queuedAt: minutes(RUNS + w) });
    await catalog.updateRun(run.id, { state: 'running', startedAt: minutes(RUNS + w) });
    for (let n = 0; !stop; n++) {
      await catalog.appendLog(
        run.id,
        Array.from({ length: 10 }, (_, k) => ({ at: minutes(RUNS + n), level: 'info' as const, message: `disk 0: block ${n * 10 + k} stored` })),
      );
      await catalog.updateRun(run.id, { bytesRead: n * 2 ** 20, bytesStored: n * 2 ** 18 });
      writes += 2;
      await new Promise((r) => setTimeout(r, 50));
    }
    await catalog.updateRun(run.id, { state: 'succeeded', endedAt: minutes(RUNS + 100) });
  });
  return async () => {
    stop = true;
    await Promise.all(loops);
    return writes;
  };
}

async function measure(catalog: Catalog): Promise<void> {
  const middle = Math.floor(RUNS / 2);
  const queries: [string, () => Promise<unknown>][] = [
    ['listRuns (newest 50)', () => catalog.listRuns()],
    ['listRuns job', () => catalog.listRuns({ job: jobName(7) })],
    ['listRuns repo+job', () => catalog.listRuns({ repo: repoOf(7), job: jobName(7) })],
    ['listRuns states=failed', () => catalog.listRuns({ states: ['failed'] })],
    ['listRuns states=interrupted,stopped', () => catalog.listRuns({ states: ['interrupted', 'stopped'] })],
    ['listRuns since (last day)', () => catalog.listRuns({ since: minutes(RUNS - 1440) })],
    ['listRuns job+failed+since', () => catalog.listRuns({ job: jobName(3), states: ['failed', 'warning'], since: minutes(middle) } satisfies RunFilter)],
    ['listRuns deep page (before)', () => catalog.listRuns({ before: middle, limit: 50 })],
    ['listRuns job, deep page', () => catalog.listRuns({ job: jobName(9), before: middle })],
    ['listRuns 1000 a page', () => catalog.listRuns({ limit: 1000 })],
    [`listPoints (${Math.ceil(POINTS / JOBS)} points)`, () => catalog.listPoints(repoOf(5), jobName(5))],
  ];
  console.log(`  ${'query'.padEnd(38)} ${'idle p50'.padStart(9)} ${'idle p99'.padStart(9)} ${'4 writers p50'.padStart(14)} ${'p99'.padStart(7)}   (ms)`);
  for (const [label, q] of queries) {
    const idle = await timeQuery(q);
    const stopWriters = startWriters(catalog);
    const busy = await timeQuery(q);
    await stopWriters();
    console.log(
      `  ${label.padEnd(38)} ${idle.p50.toFixed(2).padStart(9)} ${idle.p99.toFixed(2).padStart(9)} ${busy.p50.toFixed(2).padStart(14)} ${busy.p99.toFixed(2).padStart(7)}`,
    );
  }
}

async function benchSqlite(): Promise<void> {
  const dir = join(work, 'catalog-sqlite');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  console.log(`SQLite (${dir}/catalog.db)`);
  const catalog = await openCatalog(dir);
  try {
    await fill(catalog, 1);
    await measure(catalog);
  } finally {
    await catalog.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchPostgres(): Promise<void> {
  if (process.getuid?.() !== 0 || !existsSync(PG_BIN)) {
    console.log(`PostgreSQL: skipped (needs root and ${PG_BIN}: Debian's postgresql package)`);
    return;
  }
  const cluster = await startPostgresCluster();
  try {
    const url = await cluster.createDatabase('catalog_bench');
    console.log(`PostgreSQL 15 (temporary cluster, Unix socket)`);
    const catalog = await openCatalog(url);
    try {
      await fill(catalog, 8);
      await measure(catalog);
    } finally {
      await catalog.close();
    }
  } finally {
    await cluster.stop();
  }
}

console.log(`catalog benchmark: ${RUNS} runs, ${POINTS} points, ${JOBS} jobs; ${SAMPLES} samples a query`);
if (!process.argv.includes('--postgres-only')) await benchSqlite();
if (!process.argv.includes('--sqlite-only')) await benchPostgres();
