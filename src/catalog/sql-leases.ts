/**
 * The statements of SqlCatalog for leases (arguments already checked by it).
 * Taking a lease is one INSERT … ON CONFLICT DO UPDATE … WHERE: the database
 * decides which of several callers gets it, on SQLite and PostgreSQL alike.
 */
import type { Kysely, Selectable } from 'kysely';
import type { LeaseAttempt, LeaseRecord } from './catalog.js';
import type { CatalogSchema, LeasesTable } from './schema.js';

type Db = Kysely<CatalogSchema>;

function leaseOf(row: Selectable<LeasesTable>): LeaseRecord {
  return { name: row.name, holder: row.holder, acquiredAt: row.acquired_at, renewedAt: row.renewed_at, expiresAt: row.expires_at };
}

export async function leaseNamed(db: Db, name: string): Promise<LeaseRecord | undefined> {
  const row = await db.selectFrom('leases').selectAll().where('name', '=', name).executeTakeFirst();
  return row === undefined ? undefined : leaseOf(row);
}

/** `at` and `expiresAt` spelled as toISOString() spells them (compared as text). */
export async function takeLease(db: Db, name: string, holder: string, at: string, expiresAt: string, again = true): Promise<LeaseAttempt> {
  const before = await leaseNamed(db, name);
  const taken = await db
    .insertInto('leases')
    .values({ name, holder, acquired_at: at, renewed_at: at, expires_at: expiresAt })
    .onConflict((oc) =>
      oc
        .column('name')
        .doUpdateSet((eb) => ({
          holder: eb.ref('excluded.holder'),
          // A renewal keeps the time it was first taken.
          acquired_at: eb
            .case()
            .when('leases.holder', '=', eb.ref('excluded.holder'))
            .then(eb.ref('leases.acquired_at'))
            .else(eb.ref('excluded.acquired_at'))
            .end(),
          renewed_at: eb.ref('excluded.renewed_at'),
          expires_at: eb.ref('excluded.expires_at'),
        }))
        .where((eb) => eb.or([eb('leases.holder', '=', eb.ref('excluded.holder')), eb('leases.expires_at', '<=', eb.ref('excluded.renewed_at'))])),
    )
    .returningAll()
    .executeTakeFirst();
  if (taken !== undefined) {
    const lease = leaseOf(taken);
    // From another holder: expired or given up (a lease given up is one expired when it was).
    const takenFrom = before !== undefined && before.holder !== holder && lease.acquiredAt === at ? before : undefined;
    return { held: true, lease, takenFrom };
  }
  const other = await leaseNamed(db, name);
  // Released between the two statements (PostgreSQL reads what others committed meanwhile): once more.
  if (other === undefined && again) return takeLease(db, name, holder, at, expiresAt, false);
  if (other === undefined) throw new Error(`lease ${name} neither taken nor held by anyone`);
  return { held: false, lease: other, takenFrom: undefined };
}

export async function giveUpLease(db: Db, name: string, holder: string, at: string): Promise<boolean> {
  const r = await db
    .updateTable('leases')
    .set({ renewed_at: at, expires_at: at })
    .where('name', '=', name)
    .where('holder', '=', holder)
    .where('expires_at', '>', at)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}
