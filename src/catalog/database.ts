/**
 * The two databases the catalog runs on, each as a Kysely instance plus the
 * little that differs between them: how a write transaction takes its lock,
 * how migrations keep out of each other's way, and how the connection opens.
 */
import { chmod, mkdir, open, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { CompiledQuery, Kysely, SqliteDatabase } from 'kysely';
import { LifeboatError } from '../core/errors.js';
import type { CatalogSchema, DatabaseKind } from './schema.js';

export interface CatalogDatabase {
  readonly kind: DatabaseKind;
  readonly db: Kysely<CatalogSchema>;
  /** Where the catalog is, fit for messages: never a password. */
  readonly label: string;
  /**
   * Runs `fn` in a transaction that writes. In SQLite it holds the database's
   * write lock from its first statement, so a read-then-write (the next log
   * seq) cannot be overtaken by another writer.
   */
  write<T>(fn: (trx: Kysely<CatalogSchema>) => Promise<T>): Promise<T>;
  /**
   * In a write transaction: holds `what` until the transaction ends, so two
   * servers never migrate at once (`schema`) or interleave two replacements of
   * points (`points`: a delete and inserts that must not mix).
   */
  lockExclusive(trx: Kysely<CatalogSchema>, what: ExclusiveLock): Promise<void>;
  /**
   * Runs a read and gives its rows as arrays, in the order of its select list.
   * For the longest listings: better-sqlite3 builds each row object in C++,
   * 1.7 ms of the 3 ms a page of 1000 runs takes, where arrays mapped in
   * JavaScript cost a fraction (measured in process, 2026-12-04).
   */
  arrays(query: CompiledQuery): Promise<unknown[][]>;
  close(): Promise<void>;
}

/** How long a SQLite writer waits for another process's write lock. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000;
/** A server that does not answer fails the call instead of leaving it waiting for the OS's TCP timeout. */
const PG_CONNECT_TIMEOUT_MS = 10_000;
/** Connections per PostgreSQL pool. */
const PG_POOL_SIZE = 10;
export type ExclusiveLock = 'schema' | 'points';
/** pg_advisory_xact_lock keys ("LFBC", "LFBP" as bytes). */
const PG_LOCK_KEYS: Readonly<Record<ExclusiveLock, number>> = { schema: 0x4c464243, points: 0x4c464250 };

export type CatalogSpec = { readonly kind: 'sqlite'; readonly file: string } | { readonly kind: 'postgres'; readonly url: string };

/**
 * `sqlite:<file>`, `sqlite::memory:`, `postgres://…` / `postgresql://…`, or a
 * folder (the server's state folder: the catalog is `<dir>/catalog.db`).
 */
export function parseCatalogSpec(spec: string): CatalogSpec & { readonly folder?: string } {
  if (spec === '') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'catalog: empty location (a folder, sqlite:<file> or postgres://…)');
  if (/^postgres(ql)?:\/\//i.test(spec)) return { kind: 'postgres', url: spec };
  if (spec.startsWith('sqlite:')) {
    let file = spec.slice('sqlite:'.length);
    // sqlite:///abs/path is the URL spelling of sqlite:/abs/path.
    if (file.startsWith('//')) file = file.slice(2);
    if (file === '') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'catalog: sqlite: needs a file name (sqlite:<file>)');
    return { kind: 'sqlite', file: file === ':memory:' ? file : resolve(file) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `catalog: unknown kind of database ${JSON.stringify(spec.split(':')[0])} (a folder, sqlite:<file> or postgres://…)`,
    );
  }
  const folder = resolve(spec);
  return { kind: 'sqlite', file: join(folder, 'catalog.db'), folder };
}

/**
 * The URL without its password (in the authority or as ?password=), for
 * messages. By pattern, not by URL parsing: libpq's URLs (an empty host with a
 * user, `postgres://u:pw@/db?host=/run/postgresql`) are not WHATWG URLs.
 */
export function redactUrl(url: string): string {
  return (
    url
      // scheme://user:password@ … up to the last @ before the query (a password may hold / or @).
      .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^?#]*@/i, '$1:***@')
      .replace(/([?&]password=)[^&#]*/gi, '$1***')
  );
}

/** A database's own error as LFB_ERR_CATALOG, with its words and where. */
export function catalogError(label: string, err: unknown): LifeboatError {
  if (err instanceof LifeboatError) return err;
  const words = err instanceof Error ? err.message : String(err);
  return new LifeboatError('LFB_ERR_CATALOG', `catalog ${label}: ${words}`, { cause: err });
}

/**
 * The drivers load with the first catalog a process opens, not with every module that names the catalog's types:
 * kysely alone is 263 ES modules, and a CLI command that opens no catalog (backup, restore, --help) spent most of its
 * start-up loading them (1.2 s of a `--help` on a busy machine, mostly module resolution).
 */
const sqliteDrivers = async () => ({ kysely: await import('kysely'), BetterSqlite3: (await import('better-sqlite3')).default });
const postgresDrivers = async () => ({ kysely: await import('kysely'), pg: (await import('pg')).default });

export async function openDatabase(spec: CatalogSpec & { readonly folder?: string }): Promise<CatalogDatabase> {
  return spec.kind === 'sqlite' ? openSqlite(spec.file, spec.folder) : openPostgres(spec.url);
}

// SQLite -----------------------------------------------------------------------

/**
 * kysely prepares every query it runs, and better-sqlite3 compiles a
 * statement at each prepare; the catalog runs the same few dozen statements
 * again and again, so the compiled ones are kept (the newest 256 texts: IN
 * lists of other lengths are other texts). In the service benchmark, prepare
 * was 4% of the main thread while 4 backups ran. kysely runs each statement
 * to its end at once (all or run, never a held iterator), so one compiled
 * statement serves every caller.
 */
function keptStatements(handle: BetterSqlite3.Database, rows: 'objects' | 'arrays', max = 256): (text: string) => BetterSqlite3.Statement {
  const kept = new Map<string, BetterSqlite3.Statement>();
  return (text) => {
    let statement = kept.get(text);
    if (statement === undefined) {
      statement = handle.prepare(text);
      // A statement's row shape is its own setting: array statements are kept apart.
      if (rows === 'arrays') statement.raw(true);
      if (kept.size >= max) kept.delete(kept.keys().next().value!);
    } else kept.delete(text);
    kept.set(text, statement);
    return statement;
  };
}

function keepingStatements(handle: BetterSqlite3.Database): SqliteDatabase {
  const prepare = keptStatements(handle, 'objects');
  return {
    prepare,
    close() {
      handle.close();
    },
  };
}

/**
 * Write transactions per database file in this process, one at a time. A
 * writer waiting for SQLite's lock blocks the event loop (better-sqlite3 is
 * synchronous); if the holder were another catalog in this same process it
 * could never finish. Across processes the busy timeout does the waiting.
 */
const sqliteWriteQueues = new Map<string, Promise<unknown>>();

function oneWriterAtATime<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const before = sqliteWriteQueues.get(file) ?? Promise.resolve();
  const mine = before.then(fn, fn);
  const settled = mine.then(
    () => undefined,
    () => undefined,
  );
  sqliteWriteQueues.set(file, settled);
  void settled.then(() => {
    if (sqliteWriteQueues.get(file) === settled) sqliteWriteQueues.delete(file);
  });
  return mine;
}

async function openSqlite(file: string, folder: string | undefined): Promise<CatalogDatabase> {
  const {
    kysely: { Kysely, SqliteDialect, sql },
    BetterSqlite3,
  } = await sqliteDrivers();
  const label = file;
  let key = file;
  let handle: BetterSqlite3.Database;
  try {
    if (file !== ':memory:') {
      // Password hashes, token hashes and session ids live here: owner only.
      if (folder !== undefined) {
        await mkdir(folder, { recursive: true, mode: 0o700 });
        await chmod(folder, 0o700);
      }
      await (await open(file, 'a', 0o600)).close();
      await chmod(file, 0o600);
      key = await realpath(file);
    }
    handle = new BetterSqlite3(file, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  } catch (err) {
    throw catalogError(label, err);
  }
  try {
    // WAL: readers never wait for the writer. NORMAL is durable across a crash of
    // the process; a power loss may lose the last transactions, which a
    // `catalog rebuild` recovers from the repositories (the truth).
    handle.pragma('journal_mode = WAL');
    handle.pragma('synchronous = NORMAL');
  } catch (err) {
    handle.close();
    throw catalogError(label, err);
  }
  const db = new Kysely<CatalogSchema>({ dialect: new SqliteDialect({ database: keepingStatements(handle) }) });
  const arrayStatement = keptStatements(handle, 'arrays', 64);
  return {
    kind: 'sqlite',
    arrays: async (query) => arrayStatement(query.sql).all(query.parameters as unknown[]) as unknown[][],
    db,
    label,
    write: (fn) =>
      oneWriterAtATime(key, () =>
        db.connection().execute(async (conn) => {
          await sql`begin immediate`.execute(conn);
          try {
            const result = await fn(conn);
            await sql`commit`.execute(conn);
            return result;
          } catch (err) {
            if (handle.inTransaction) await sql`rollback`.execute(conn);
            throw err;
          }
        }),
      ),
    lockExclusive: async () => {
      // `begin immediate` already holds the database's one write lock.
    },
    close: () => db.destroy(),
  };
}

// PostgreSQL -------------------------------------------------------------------

/** int8 (OID 20) as a number, not a string: sizes stay below 2^53 (catalog.ts). */
const PG_INT8_OID = 20;

async function openPostgres(url: string): Promise<CatalogDatabase> {
  const {
    kysely: { Kysely, PostgresDialect, sql },
    pg,
  } = await postgresDrivers();
  const pgTypes = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === PG_INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const label = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: PG_POOL_SIZE, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, types: pgTypes });
  // An idle connection the server dropped must not crash the process: the
  // next query reconnects or reports the failure as LFB_ERR_CATALOG.
  pool.on('error', () => undefined);
  const db = new Kysely<CatalogSchema>({ dialect: new PostgresDialect({ pool }) });
  return {
    kind: 'postgres',
    db,
    arrays: async (query) => (await pool.query({ text: query.sql, values: [...query.parameters], rowMode: 'array' })).rows as unknown[][],
    label,
    write: (fn) => db.transaction().execute(fn),
    lockExclusive: async (trx, what) => {
      await sql`select pg_advisory_xact_lock(${PG_LOCK_KEYS[what]})`.execute(trx);
    },
    close: () => db.destroy(),
  };
}
