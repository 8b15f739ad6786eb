/**
 * API tokens and console sessions: random secrets of which the catalog keeps
 * only SHA-256 digests, so a copy of the catalog yields no working credential.
 *
 * A token reads `lfb_<id>_<secret>`: the id (8 hex digits) names it in
 * listings and revocations, the secret is 32 random bytes in base64url.
 * A console session is a random cookie value (stored as its SHA-256) with a
 * CSRF token the console sends back in `x-csrf-token` on every change.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { TokenRecord, WebSessionRecord } from '../catalog/catalog.js';

export const TOKEN_PREFIX = 'lfb_';
const TOKEN_PATTERN = /^lfb_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$/;
const SECRET_BYTES = 32;

/** How long a console login lasts. */
export const DEFAULT_SESSION_TTL_MS = 12 * 3600_000;
/** The longest a token's label may be. */
export const MAX_TOKEN_NAME_LENGTH = 100;

/** SHA-256 in hex: what the catalog stores of a token or a session cookie. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Equal strings, compared in time that does not depend on where they differ (only on their length). */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  // timingSafeEqual needs equal lengths; comparing x with itself keeps the time the same when they differ.
  return x.length === y.length ? timingSafeEqual(x, y) : !timingSafeEqual(x, x);
}

export interface ParsedToken {
  readonly id: string;
  readonly secret: string;
}

/** The id and secret of a well-formed token; undefined for anything else (never throws on a peer's input). */
export function parseApiToken(text: string): ParsedToken | undefined {
  if (text.length !== TOKEN_PREFIX.length + 8 + 1 + 43) return undefined;
  const m = TOKEN_PATTERN.exec(text);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export interface NewApiToken {
  /** The token: shown to its owner once, never stored. */
  readonly token: string;
  /** What the catalog keeps. */
  readonly record: TokenRecord;
}

/** A new token for `user`. `takenIds` are ids already in use (an id is 32 bits: a clash is rare, not impossible). */
export function makeApiToken(user: string, name: string, clock: Clock, takenIds: ReadonlySet<string> = new Set()): NewApiToken {
  let id: string;
  do id = randomBytes(4).toString('hex');
  while (takenIds.has(id));
  const token = `${TOKEN_PREFIX}${id}_${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { token, record: { id, user, name, hash: sha256Hex(token), createdAt: clock.now().toISOString(), lastUsedAt: null } };
}

/** Whether `token` is the one `record` was made from (the record's id and digest both match). */
export function tokenMatches(token: string, record: TokenRecord): boolean {
  const parsed = parseApiToken(token);
  if (!parsed) return false;
  const idOk = constantTimeEqual(parsed.id, record.id);
  const hashOk = constantTimeEqual(sha256Hex(token), record.hash);
  return idOk && hashOk;
}

export interface NewWebSession {
  /** The cookie's value: given to the browser, never stored. */
  readonly cookieValue: string;
  /** What the catalog keeps (its csrfToken the console also gets). */
  readonly record: WebSessionRecord;
}

export function makeWebSession(user: string, clock: Clock, ttlMs: number = DEFAULT_SESSION_TTL_MS): NewWebSession {
  const now = clock.now();
  const cookieValue = randomBytes(SECRET_BYTES).toString('base64url');
  return {
    cookieValue,
    record: {
      idHash: sha256Hex(cookieValue),
      user,
      csrfToken: randomBytes(SECRET_BYTES).toString('base64url'),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttlMs).toISOString(),
    },
  };
}

/** A cookie value as makeWebSession makes them (43 base64url characters); anything else is not looked up. */
export function isWellFormedCookieValue(value: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(value);
}
