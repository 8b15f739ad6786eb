/**
 * Who is asking: an API token (`Authorization: Bearer lfb_…`) or a console
 * session cookie, checked against the catalog. Framework-free: header strings
 * in, a principal or a LifeboatError out, so the HTTP layer only copies
 * headers across and maps LFB_ERR_UNAUTHENTICATED to 401, LFB_ERR_FORBIDDEN
 * to 403 and LFB_ERR_RATE_LIMITED to 429.
 */
import type { Catalog, UserRecord, UserRole } from '../catalog/catalog.js';
import type { Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { isValidUserName } from './accounts.js';
import { hashPassword, MAX_PASSWORD_LENGTH, verifyPassword } from './passwords.js';
import { LoginRateLimiter, loginKeys } from './rate-limit.js';
import { constantTimeEqual, DEFAULT_SESSION_TTL_MS, isWellFormedCookieValue, makeWebSession, parseApiToken, sha256Hex, tokenMatches } from './tokens.js';

export const SESSION_COOKIE = 'lifeboat_session';
export const CSRF_HEADER = 'x-csrf-token' as const;
/** Methods that change nothing: a cookie request with one of these needs no CSRF token. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** A token's last use is written at most this often (a script polling every second would otherwise write every second). */
const TOUCH_INTERVAL_MS = 60_000;

/** A header as Node gives it: absent, one value, or (repeated) several. */
export type HeaderValue = string | readonly string[] | undefined;

/** The request headers authentication reads, by their lower-case names (Node's IncomingHttpHeaders fits). */
export interface AuthHeaders {
  readonly authorization?: HeaderValue;
  readonly cookie?: HeaderValue;
  readonly 'x-csrf-token'?: HeaderValue;
}

export interface Principal {
  readonly user: string;
  readonly role: UserRole;
  readonly via: 'token' | 'cookie';
  /** The API token's id (via token). */
  readonly tokenId?: string;
  /** The console session's CSRF token and end (via cookie): the console reads them back after a reload. */
  readonly session?: { readonly csrfToken: string; readonly expiresAt: string };
}

export interface LoginResult {
  readonly user: string;
  readonly role: UserRole;
  /** The session cookie's secret value, for the Set-Cookie header (sessionCookie()); only its SHA-256 is stored. */
  readonly sessionId: string;
  readonly csrfToken: string;
  readonly expiresAt: string;
}

/** The part of the catalog the authenticator uses. */
export type AuthCatalog = Pick<
  Catalog,
  'getUser' | 'findToken' | 'touchToken' | 'addWebSession' | 'findWebSession' | 'deleteWebSession' | 'deleteExpiredWebSessions'
>;

export interface AuthenticatorOptions {
  readonly clock: Clock;
  /** Default 12 hours. */
  readonly sessionTtlMs?: number;
  /** Default: a LoginRateLimiter with DEFAULT_RATE_LIMITS on the same clock. */
  readonly limiter?: LoginRateLimiter;
}

function unauthenticated(message: string): LifeboatError {
  return new LifeboatError('LFB_ERR_UNAUTHENTICATED', message);
}

/** One value of a header that must not repeat; undefined when absent, UNAUTHENTICATED when repeated. */
function single(value: HeaderValue, name: string): string | undefined {
  if (value === undefined || typeof value === 'string') return value;
  if (value.length === 1) return value[0];
  throw unauthenticated(`the ${name} header appears ${value.length} times`);
}

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), if present. */
export function cookieValue(header: HeaderValue, name: string): string | undefined {
  const all = typeof header === 'string' ? [header] : (header ?? []);
  for (const h of all)
    for (const part of h.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  return undefined;
}

/** The Set-Cookie header for a new console session. `secure`: served over HTTPS (the browser then never sends it in clear). */
export function sessionCookie(login: Pick<LoginResult, 'sessionId' | 'expiresAt'>, opts: { secure: boolean; now: Date }): string {
  const maxAge = Math.max(0, Math.floor((Date.parse(login.expiresAt) - opts.now.getTime()) / 1000));
  return `${SESSION_COOKIE}=${login.sessionId}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${opts.secure ? '; Secure' : ''}`;
}

/** The Set-Cookie header that makes the browser drop the session cookie (logout). */
export function clearedSessionCookie(opts: { secure: boolean }): string {
  return `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${opts.secure ? '; Secure' : ''}`;
}

export class Authenticator {
  readonly limiter: LoginRateLimiter;
  readonly cookieName = SESSION_COOKIE;
  private readonly clock: Clock;
  private readonly sessionTtlMs: number;
  /** Verified against when the user does not exist, so that a wrong name takes as long as a wrong password. */
  private decoyHash: Promise<string> | undefined;

  constructor(
    private readonly catalog: AuthCatalog,
    options: AuthenticatorOptions,
  ) {
    this.clock = options.clock;
    this.sessionTtlMs = options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
    this.limiter = options.limiter ?? new LoginRateLimiter(options.clock);
  }

  /**
   * The principal behind a request. An Authorization header wins over a cookie (and, if present, must
   * be valid: it never falls back to the cookie). LFB_ERR_UNAUTHENTICATED without valid credentials;
   * LFB_ERR_FORBIDDEN for a cookie request that changes something without the session's CSRF token.
   */
  async authenticate(headers: AuthHeaders, method: string): Promise<Principal> {
    const authorization = single(headers.authorization, 'authorization');
    if (authorization !== undefined) return this.byToken(authorization);
    const cookie = cookieValue(headers.cookie, SESSION_COOKIE);
    if (cookie !== undefined) return this.byCookie(cookie, headers, method);
    throw unauthenticated('this needs an API token (Authorization: Bearer …) or a console login');
  }

  /**
   * A console login: a new session (its cookie value and CSRF token), or LFB_ERR_UNAUTHENTICATED for a
   * wrong name or password (the same message for both), or LFB_ERR_RATE_LIMITED after repeated failures
   * from the address or for the name.
   */
  async login(name: string, password: string, clientAddress: string): Promise<LoginResult> {
    const keys = loginKeys(clientAddress, name.slice(0, 64));
    this.limiter.check(keys);
    // Counted before the (slow) check: parallel attempts cannot all pass the limit before the first failure is recorded.
    this.limiter.recordFailure(keys);
    const user = isValidUserName(name) ? await this.catalog.getUser(name) : undefined;
    const stored = user?.passwordHash ?? (await this.decoy());
    const passwordOk = password.length <= MAX_PASSWORD_LENGTH * 4 && (await verifyPassword(password, stored));
    if (!user || !passwordOk) throw unauthenticated('wrong user name or password');
    this.limiter.recordSuccess(keys);
    // A data mover's user has a token and nothing to see: no console session.
    if (user.role === 'mover')
      throw new LifeboatError('LFB_ERR_FORBIDDEN', `user ${user.name} (mover) is a data mover's: it has API tokens, not console logins`, {
        details: { user: user.name, role: user.role },
      });
    await this.catalog.deleteExpiredWebSessions(this.clock.now().toISOString());
    const made = makeWebSession(user.name, this.clock, this.sessionTtlMs);
    await this.catalog.addWebSession(made.record);
    return { user: user.name, role: user.role, sessionId: made.cookieValue, csrfToken: made.record.csrfToken, expiresAt: made.record.expiresAt };
  }

  /** Ends the console session of the request's cookie, if there is one (logging out twice is not an error). */
  async logout(cookieHeader: HeaderValue): Promise<void> {
    const value = cookieValue(cookieHeader, SESSION_COOKIE);
    if (value !== undefined && isWellFormedCookieValue(value)) await this.catalog.deleteWebSession(sha256Hex(value));
  }

  /** Removes expired console sessions (the server calls this now and then); returns how many. */
  pruneSessions(): Promise<number> {
    return this.catalog.deleteExpiredWebSessions(this.clock.now().toISOString());
  }

  private async byToken(header: string): Promise<Principal> {
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m) throw unauthenticated('the Authorization header is not "Bearer <token>"');
    const token = m[1]!;
    if (!parseApiToken(token)) throw unauthenticated('the bearer token is not a Lifeboat API token (lfb_<id>_<secret>)');
    const record = await this.catalog.findToken(sha256Hex(token));
    if (!record || !tokenMatches(token, record)) throw unauthenticated('the API token is not valid (revoked, or never made here)');
    const user = await this.liveUser(record.user, record.createdAt);
    const now = this.clock.now();
    if (record.lastUsedAt === null || now.getTime() - Date.parse(record.lastUsedAt) >= TOUCH_INTERVAL_MS)
      await this.catalog.touchToken(record.id, now.toISOString());
    return { user: user.name, role: user.role, via: 'token', tokenId: record.id };
  }

  private async byCookie(value: string, headers: AuthHeaders, method: string): Promise<Principal> {
    if (!isWellFormedCookieValue(value)) throw unauthenticated('the session cookie is not valid; log in again');
    const idHash = sha256Hex(value);
    const session = await this.catalog.findWebSession(idHash);
    if (!session || !constantTimeEqual(session.idHash, idHash)) throw unauthenticated('the console session is not valid; log in again');
    if (Date.parse(session.expiresAt) <= this.clock.now().getTime()) {
      await this.catalog.deleteWebSession(idHash);
      throw unauthenticated('the console session has expired; log in again');
    }
    const user = await this.liveUser(session.user, session.createdAt);
    if (!SAFE_METHODS.has(method.toUpperCase())) {
      const csrf = single(headers[CSRF_HEADER], CSRF_HEADER);
      if (csrf === undefined || !constantTimeEqual(csrf, session.csrfToken))
        throw new LifeboatError('LFB_ERR_FORBIDDEN', `a change made with a session cookie needs the session's ${CSRF_HEADER} header`);
    }
    return { user: user.name, role: user.role, via: 'cookie', session: { csrfToken: session.csrfToken, expiresAt: session.expiresAt } };
  }

  /** The credential's user, if it still exists and is not a newer user of the same name. */
  private async liveUser(name: string, credentialCreatedAt: string): Promise<UserRecord> {
    const user = await this.catalog.getUser(name);
    if (!user || Date.parse(credentialCreatedAt) < Date.parse(user.createdAt)) throw unauthenticated(`user ${name} no longer exists`);
    return user;
  }

  private decoy(): Promise<string> {
    this.decoyHash ??= hashPassword('decoy password: never a real one');
    return this.decoyHash;
  }
}
