/**
 * Users and API tokens over a catalog: what `lifeboat user …` and
 * `lifeboat token …` do, and what the HTTP API's user routes will do.
 */
import { USER_ROLES, type Catalog, type TokenRecord, type UserRecord, type UserRole } from '../catalog/catalog.js';
import type { Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { hashPassword, type ScryptParams } from './passwords.js';
import { isUserRole } from './permissions.js';
import { makeApiToken, MAX_TOKEN_NAME_LENGTH } from './tokens.js';

/** The part of the catalog user and token management uses. */
export type AccountCatalog = Pick<Catalog, 'addUser' | 'getUser' | 'listUsers' | 'deleteUser' | 'updateUser' | 'addToken' | 'listTokens' | 'deleteToken'>;

/** Letters, digits, `.`, `_`, `-`; starting with a letter or digit; at most 64. */
const USER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidUserName(name: string): boolean {
  return USER_NAME_PATTERN.test(name);
}

export function checkUserName(name: string): void {
  if (!isValidUserName(name))
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `user name "${name.slice(0, 80)}" is not valid: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
}

export function checkRole(role: string): UserRole {
  if (!isUserRole(role)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `role "${role}" is not one of ${USER_ROLES.join(', ')}`);
  return role;
}

/** A new user; LFB_ERR_USER_EXISTS if the name is taken, LFB_ERR_INVALID_ARGUMENT for a bad name, role or password. */
export async function addUser(catalog: AccountCatalog, name: string, role: string, password: string, clock: Clock, params?: ScryptParams): Promise<UserRecord> {
  checkUserName(name);
  const checkedRole = checkRole(role);
  if (await catalog.getUser(name)) throw new LifeboatError('LFB_ERR_USER_EXISTS', `user ${name} exists`, { details: { user: name } });
  const user: UserRecord = { name, role: checkedRole, passwordHash: await hashPassword(password, params), createdAt: clock.now().toISOString() };
  await catalog.addUser(user);
  return user;
}

export async function requireUser(catalog: AccountCatalog, name: string): Promise<UserRecord> {
  const user = await catalog.getUser(name);
  if (!user) throw new LifeboatError('LFB_ERR_USER_NOT_FOUND', `no user ${name}`, { details: { user: name } });
  return user;
}

/**
 * Removes a user and their tokens. Their console sessions stop working at once too: the authenticator
 * refuses a session or token of a user that no longer exists, or that is older than the user (a
 * user deleted and added again does not inherit the old one's logins).
 */
export async function deleteUser(catalog: AccountCatalog, name: string): Promise<{ tokensRevoked: number }> {
  await requireUser(catalog, name);
  const tokens = await catalog.listTokens(name);
  for (const t of tokens) await catalog.deleteToken(t.id);
  await catalog.deleteUser(name);
  return { tokensRevoked: tokens.length };
}

/**
 * A user's new role and/or password (checked and hashed as at `user add`). A new password ends the
 * user's console logins (API tokens stay: revoke them with `token revoke`); a new role counts from the
 * user's next request, since every request reads the user.
 */
export async function changeUser(
  catalog: AccountCatalog,
  name: string,
  change: { role?: string | undefined; password?: string | undefined },
  params?: ScryptParams,
): Promise<UserRecord> {
  const role = change.role === undefined ? undefined : checkRole(change.role);
  if (role === undefined && change.password === undefined)
    throw new LifeboatError('LFB_ERR_USAGE', 'nothing to change: give a new role, a new password, or both');
  await requireUser(catalog, name);
  const passwordHash = change.password === undefined ? undefined : await hashPassword(change.password, params);
  return catalog.updateUser(name, { role, passwordHash });
}

/** A new API token for an existing user: the token (to show once) and its record (as stored). */
export async function createToken(catalog: AccountCatalog, userName: string, label: string, clock: Clock): Promise<{ token: string; record: TokenRecord }> {
  await requireUser(catalog, userName);
  if (label.length > MAX_TOKEN_NAME_LENGTH || /[\p{Cc}]/u.test(label))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a token's name has at most ${MAX_TOKEN_NAME_LENGTH} characters and no control characters`);
  const taken = new Set((await catalog.listTokens()).map((t) => t.id));
  const made = makeApiToken(userName, label, clock, taken);
  await catalog.addToken(made.record);
  return made;
}

/** LFB_ERR_TOKEN_NOT_FOUND when no token has that id. */
export async function revokeToken(catalog: AccountCatalog, id: string): Promise<TokenRecord> {
  const found = (await catalog.listTokens()).find((t) => t.id === id);
  if (!found) throw new LifeboatError('LFB_ERR_TOKEN_NOT_FOUND', `no API token with id ${id}`, { details: { id } });
  await catalog.deleteToken(id);
  return found;
}
