/**
 * The statements of SqlCatalog for runs, their tasks and their logs
 * (arguments already checked by it; each runs on the database or inside the
 * write transaction it is given).
 */
import { sql, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import type { LogLine, NewRun, RunFilter } from './catalog.js';
import { INSERT_CHUNK, chunks, runNotFound } from './checks.js';
import type { CatalogDatabase } from './database.js';
import { RUN_COLUMNS, RUN_FIELDS } from './rows.js';
import type { CatalogSchema, RunsTable, TasksTable } from './schema.js';

type Db = Kysely<CatalogSchema>;

/** What a run left unfinished by a dead server gets as its error. */
const INTERRUPTED_CODE = 'LFB_ERR_INTERRUPTED';
const INTERRUPTED_MESSAGE = 'the server stopped before the run ended';

export function insertRun(db: Db, run: NewRun): Promise<Selectable<RunsTable>> {
  return db
    .insertInto('runs')
    .values({
      repo: run.repo,
      job: run.job,
      trigger: run.trigger,
      attempt: run.attempt,
      retry_of: run.retryOf,
      state: 'queued',
      queued_at: run.queuedAt,
      started_at: null,
      ended_at: null,
      bytes_read: 0,
      bytes_stored: 0,
      steps: '{}',
      error_code: null,
      error_message: null,
      point_id: null,
      change_method: null,
      change_reason: null,
      kind: run.kind ?? 'backup',
      report_id: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The runs that pass the filter (`since` already an ISO instant), newest first, at most `count`. */
function newestFirst(database: CatalogDatabase, filter: RunFilter, since: string | undefined, count: number) {
  let q = database.db.selectFrom('runs');
  if (filter.repo !== undefined) q = q.where('repo', '=', filter.repo);
  if (filter.job !== undefined) q = q.where('job', '=', filter.job);
  if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
  if (filter.states !== undefined) q = q.where('state', 'in', [...filter.states]);
  if (since !== undefined) q = q.where('queued_at', '>=', since);
  if (filter.before !== undefined) q = q.where('id', '<', filter.before);
  return q.orderBy('id', 'desc').limit(count);
}

/** The newest `count` runs that pass the filter, as arrays of RUN_COLUMNS. */
export function runsNewestFirst(database: CatalogDatabase, filter: RunFilter, since: string | undefined, count: number): Promise<unknown[][]> {
  return database.arrays(newestFirst(database, filter, since, count).select(RUN_COLUMNS).compile());
}

/**
 * The same runs as [id, repo, the run as JSON text], the text made by the database: a record's fields in
 * RunRecord's order, `steps` as the object it holds (both databases keep integers whole and strings as they are).
 */
export function runsNewestFirstAsJson(database: CatalogDatabase, filter: RunFilter, since: string | undefined, count: number): Promise<unknown[][]> {
  return database.arrays(
    newestFirst(database, filter, since, count)
      .select(['id', 'repo', runJson(database.kind).as('json')])
      .compile(),
  );
}

/** The JSON text expression of a run, by database: made once, not at every listing. */
const runJsonOf = new Map<CatalogDatabase['kind'], RawBuilder<string>>();

function runJson(kind: CatalogDatabase['kind']): RawBuilder<string> {
  let json = runJsonOf.get(kind);
  if (json === undefined) {
    const pairs = RUN_FIELDS.map(([field, column]) => {
      const value = column !== 'steps' ? sql.ref(column) : kind === 'sqlite' ? sql`json(steps)` : sql`steps::json`;
      return sql`${sql.lit(field)}, ${value}`;
    });
    json = kind === 'sqlite' ? sql<string>`json_object(${sql.join(pairs)})` : sql<string>`json_build_object(${sql.join(pairs)})::text`;
    runJsonOf.set(kind, json);
  }
  return json;
}

/** In a write transaction: the queued and running runs (of `repos`, or all; running ones only with `runningOnly`) and their tasks become interrupted; the runs changed. */
export async function markInterrupted(trx: Db, at: string, repos: readonly string[] | undefined, runningOnly = false): Promise<Selectable<RunsTable>[]> {
  const unfinished = runningOnly ? ['running'] : ['running', 'queued'];
  // Only the given repositories' runs: other servers sharing the catalog have theirs under way.
  const mine = trx.selectFrom('runs').select('id').where('state', 'in', unfinished);
  const ofRepos = repos === undefined ? mine : mine.where('repo', 'in', [...repos]);
  await trx
    .updateTable('tasks')
    .set((eb) => ({ state: 'interrupted', ended_at: eb.fn.coalesce('ended_at', eb.val(at)) }))
    .where('state', 'in', unfinished)
    .where('run_id', 'in', ofRepos)
    .execute();
  let runs = trx
    .updateTable('runs')
    .set((eb) => ({
      state: 'interrupted',
      ended_at: eb.fn.coalesce('ended_at', eb.val(at)),
      error_code: eb.fn.coalesce('error_code', eb.val(INTERRUPTED_CODE)),
      error_message: eb.fn.coalesce('error_message', eb.val(INTERRUPTED_MESSAGE)),
    }))
    .where('state', 'in', unfinished);
  if (repos !== undefined) runs = runs.where('repo', 'in', [...repos]);
  return runs.returningAll().execute();
}

/** A task of a run, written or replaced (one per run and disk). */
export async function upsertTask(trx: Db, row: TasksTable): Promise<void> {
  await trx
    .insertInto('tasks')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['run_id', 'disk']).doUpdateSet({
        disk_name: row.disk_name,
        state: row.state,
        started_at: row.started_at,
        ended_at: row.ended_at,
        bytes_read: row.bytes_read,
        bytes_stored: row.bytes_stored,
      }),
    )
    .execute();
}

/** In a write transaction that holds the run's lock: the lines, numbered on from the run's last. */
export async function appendLines(trx: Db, runId: number, lines: readonly Omit<LogLine, 'runId' | 'seq'>[]): Promise<void> {
  const last = await trx
    .selectFrom('log_lines')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('run_id', '=', runId)
    .executeTakeFirst();
  let seq = Number(last?.seq ?? 0);
  for (const chunk of chunks(lines, INSERT_CHUNK)) {
    await trx
      .insertInto('log_lines')
      .values(chunk.map((l) => ({ run_id: runId, seq: ++seq, at: l.at, level: l.level, message: l.message })))
      .execute();
  }
}

/**
 * In a write transaction: the run exists (else LFB_ERR_RUN_NOT_FOUND), locked
 * until commit. Locking the run orders concurrent writers of its tasks and log
 * on PostgreSQL; SQLite's write transaction already holds the database's one
 * write lock.
 */
export async function lockRun(trx: Db, runId: number, kind: CatalogDatabase['kind']): Promise<void> {
  const found = await trx
    .selectFrom('runs')
    .select('id')
    .where('id', '=', runId)
    .$if(kind === 'postgres', (q) => q.forUpdate())
    .executeTakeFirst();
  if (found === undefined) throw runNotFound(runId);
}
