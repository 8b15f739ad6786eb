import { systemClock, type Clock } from '../core/clock.js';
import type { Catalog } from './catalog.js';
import { catalogError, openDatabase, parseCatalogSpec } from './database.js';
import { migrateCatalog } from './migrate.js';
import { SqlCatalog } from './sql-catalog.js';

export interface OpenCatalogOptions {
  /** Recorded with each migration applied (default: the system clock). */
  readonly clock?: Clock;
}

/**
 * Opens the catalog at `spec` and brings its schema up to date:
 * - a folder: SQLite in `<folder>/catalog.db` (the folder is made 0700);
 * - `sqlite:<file>` (or `sqlite::memory:`): SQLite in that file (made 0600), WAL mode;
 * - `postgres://…` or `postgresql://…` (a socket: `postgres:///db?host=/run/postgresql`).
 * LFB_ERR_CATALOG when the database fails (with its words, never a password),
 * LFB_ERR_CATALOG_VERSION when a newer Lifeboat wrote it.
 */
export async function openCatalog(spec: string, opts: OpenCatalogOptions = {}): Promise<Catalog> {
  const database = await openDatabase(parseCatalogSpec(spec));
  try {
    await migrateCatalog(database, (opts.clock ?? systemClock).now().toISOString());
  } catch (err) {
    await database.close().catch(() => undefined);
    throw catalogError(database.label, err);
  }
  return new SqlCatalog(database);
}
