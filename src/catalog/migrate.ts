/**
 * Brings a catalog's schema to a version: one transaction that locks out
 * other servers, reads the recorded version, refuses a catalog newer than this
 * code, and applies each missing migration in order, recording each.
 */
import type { Kysely } from 'kysely';
import { LifeboatError } from '../core/errors.js';
import type { CatalogDatabase } from './database.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations/index.js';
import type { CatalogSchema } from './schema.js';

/** The version recorded in the catalog; 0 for an empty database. */
export async function readSchemaVersion(db: Kysely<Pick<CatalogSchema, 'catalog_schema'>>): Promise<number> {
  const tables = await db.introspection.getTables();
  if (!tables.some((t) => t.name === 'catalog_schema')) return 0;
  const row = await db
    .selectFrom('catalog_schema')
    .select((eb) => eb.fn.max('version').as('version'))
    .executeTakeFirst();
  return Number(row?.version ?? 0);
}

/**
 * Migrates to `target` (default: the newest this code knows). Returns the
 * version the catalog is at. `now` is recorded with each applied step.
 */
export async function migrateCatalog(database: CatalogDatabase, now: string, target: number = LATEST_SCHEMA_VERSION): Promise<number> {
  if (!MIGRATIONS.some((m) => m.version === target)) {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `catalog: no schema version ${target} (this Lifeboat knows 1 to ${LATEST_SCHEMA_VERSION})`);
  }
  return database.write(async (trx) => {
    await database.lockExclusive(trx, 'schema');
    await trx.schema
      .createTable('catalog_schema')
      .ifNotExists()
      .addColumn('version', 'integer', (c) => c.primaryKey())
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('applied_at', 'text', (c) => c.notNull())
      .execute();
    const current = await readSchemaVersion(trx);
    if (current > LATEST_SCHEMA_VERSION) {
      throw new LifeboatError(
        'LFB_ERR_CATALOG_VERSION',
        `catalog ${database.label} is at schema version ${current}, written by a newer Lifeboat; this one knows up to version ${LATEST_SCHEMA_VERSION}`,
        { details: { version: current, known: LATEST_SCHEMA_VERSION } },
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current || m.version > target) continue;
      await m.up(trx as Kysely<unknown>, database.kind);
      await trx.insertInto('catalog_schema').values({ version: m.version, description: m.description, applied_at: now }).execute();
    }
    return Math.max(current, target);
  });
}
