import type { Migration } from './migration.js';

/**
 * Leases: a named right that one holder has until it expires, unless renewed
 * (the scheduler of a set of repositories is run by the one server of several
 * sharing the catalog that holds its lease).
 */
export const v008Leases: Migration = {
  version: 8,
  description: 'leases (one scheduler among servers sharing a catalog)',
  async up(db) {
    await db.schema
      .createTable('leases')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('holder', 'text', (c) => c.notNull())
      .addColumn('acquired_at', 'text', (c) => c.notNull())
      .addColumn('renewed_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .execute();
  },
};
