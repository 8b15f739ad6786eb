import type { Kysely } from 'kysely';
import type { DatabaseKind } from '../schema.js';

/**
 * One step of the catalog's schema. A migration is never edited once released:
 * a change to the schema is a new file with the next version, so every catalog
 * written by an older Lifeboat walks the same path to the newest schema.
 */
export interface Migration {
  readonly version: number;
  readonly description: string;
  /**
   * Runs inside the migration's transaction (both databases have transactional
   * DDL). `db` is untyped on purpose: it sees the schema as it was at this
   * version, not as schema.ts describes the newest one.
   */
  up(db: Kysely<unknown>, kind: DatabaseKind): Promise<void>;
}
