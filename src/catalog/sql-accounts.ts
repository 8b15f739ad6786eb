/**
 * The statements of SqlCatalog for users, API tokens and console sessions
 * (arguments already checked by it; each runs on the database or inside the
 * write transaction it is given).
 */
import type { Kysely } from 'kysely';
import { LifeboatError } from '../core/errors.js';
import type { TokenRecord, UserChange, UserRecord, WebSessionRecord } from './catalog.js';
import { userNotFound } from './checks.js';
import * as rows from './rows.js';
import type { CatalogSchema } from './schema.js';

type Db = Kysely<CatalogSchema>;

export async function insertUser(db: Db, user: UserRecord): Promise<void> {
  const result = await db
    .insertInto('users')
    .values(rows.userToRow(user))
    .onConflict((oc) => oc.column('name').doNothing())
    .executeTakeFirst();
  if (Number(result.numInsertedOrUpdatedRows ?? 0) === 0) {
    throw new LifeboatError('LFB_ERR_USER_EXISTS', `user ${JSON.stringify(user.name)} exists`, { details: { user: user.name } });
  }
}

export async function userNamed(db: Db, name: string): Promise<UserRecord | undefined> {
  const row = await db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
  return row === undefined ? undefined : rows.userFromRow(row);
}

export async function allUsers(db: Db): Promise<readonly UserRecord[]> {
  return (await db.selectFrom('users').selectAll().orderBy('name').execute()).map(rows.userFromRow);
}

/** In a write transaction: the user, its tokens and its console sessions. */
export async function removeUser(trx: Db, name: string): Promise<void> {
  const result = await trx.deleteFrom('users').where('name', '=', name).executeTakeFirst();
  if (Number(result.numDeletedRows) === 0) throw userNotFound(name);
  await trx.deleteFrom('api_tokens').where('user_name', '=', name).execute();
  await trx.deleteFrom('web_sessions').where('user_name', '=', name).execute();
}

/** In a write transaction. */
export async function changeUser(trx: Db, name: string, change: UserChange): Promise<UserRecord> {
  const found = await trx.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
  if (found === undefined) throw userNotFound(name);
  const now = rows.userFromRow(found);
  const next: UserRecord = {
    ...now,
    ...(change.role !== undefined ? { role: change.role } : {}),
    ...(change.passwordHash !== undefined ? { passwordHash: change.passwordHash } : {}),
  };
  const row = rows.userToRow(next);
  await trx.updateTable('users').set({ role: row.role, password_hash: row.password_hash }).where('name', '=', name).execute();
  // A password is changed when it may be known to someone else: logins made with the old one end with it.
  if (change.passwordHash !== undefined) await trx.deleteFrom('web_sessions').where('user_name', '=', name).execute();
  return next;
}

async function requireUser(trx: Db, name: string): Promise<void> {
  const found = await trx.selectFrom('users').select('name').where('name', '=', name).executeTakeFirst();
  if (found === undefined) throw userNotFound(name);
}

/** In a write transaction: LFB_ERR_USER_NOT_FOUND when the token's user does not exist. */
export async function insertToken(trx: Db, token: TokenRecord): Promise<void> {
  await requireUser(trx, token.user);
  await trx.insertInto('api_tokens').values(rows.tokenToRow(token)).execute();
}

export async function tokenWithHash(db: Db, hash: string): Promise<TokenRecord | undefined> {
  const row = await db.selectFrom('api_tokens').selectAll().where('hash', '=', hash).executeTakeFirst();
  return row === undefined ? undefined : rows.tokenFromRow(row);
}

export async function markTokenUsed(db: Db, id: string, at: string): Promise<void> {
  await db.updateTable('api_tokens').set({ last_used_at: at }).where('id', '=', id).execute();
}

export async function tokensOf(db: Db, user: string | undefined): Promise<readonly TokenRecord[]> {
  const found = await db
    .selectFrom('api_tokens')
    .selectAll()
    .$if(user !== undefined, (q) => q.where('user_name', '=', user!))
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return found.map(rows.tokenFromRow);
}

export async function removeToken(db: Db, id: string): Promise<void> {
  await db.deleteFrom('api_tokens').where('id', '=', id).execute();
}

/** In a write transaction: LFB_ERR_USER_NOT_FOUND when the session's user does not exist. */
export async function insertWebSession(trx: Db, s: WebSessionRecord): Promise<void> {
  await requireUser(trx, s.user);
  await trx.insertInto('web_sessions').values(rows.webSessionToRow(s)).execute();
}

export async function webSessionWithHash(db: Db, idHash: string): Promise<WebSessionRecord | undefined> {
  const row = await db.selectFrom('web_sessions').selectAll().where('id_hash', '=', idHash).executeTakeFirst();
  return row === undefined ? undefined : rows.webSessionFromRow(row);
}

export async function removeWebSession(db: Db, idHash: string): Promise<void> {
  await db.deleteFrom('web_sessions').where('id_hash', '=', idHash).execute();
}

/** Sessions that expired at or before `at`; returns how many went. */
export async function removeWebSessionsExpiredBy(db: Db, at: string): Promise<number> {
  const result = await db.deleteFrom('web_sessions').where('expires_at', '<=', at).executeTakeFirst();
  return Number(result.numDeletedRows);
}
