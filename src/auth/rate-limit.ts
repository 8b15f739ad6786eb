/**
 * Failed-login limiting. Every failed login counts against the client's
 * address and against the user name tried; after `maxFailures` failures in a
 * row a key is locked out, for `baseLockoutMs` and twice as long after every
 * further failure (up to `maxLockoutMs`). A successful login clears the
 * keys it used; a key with no failure for `forgetAfterMs` is forgotten.
 *
 * Memory is bounded: at most `maxKeys` keys are tracked, the one least
 * recently failed is dropped first. (An attacker who floods the table with
 * fresh addresses can push an older lockout out; the per-user key still
 * stands for the names they try.)
 */
import type { Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';

export interface RateLimitOptions {
  readonly maxFailures?: number;
  readonly baseLockoutMs?: number;
  readonly maxLockoutMs?: number;
  readonly forgetAfterMs?: number;
  readonly maxKeys?: number;
}

export const DEFAULT_RATE_LIMITS: Required<RateLimitOptions> = {
  maxFailures: 5,
  baseLockoutMs: 30_000,
  maxLockoutMs: 15 * 60_000,
  forgetAfterMs: 30 * 60_000,
  maxKeys: 10_000,
};

interface Entry {
  failures: number;
  lastFailureMs: number;
  lockedUntilMs: number;
}

/** The keys a login attempt counts against. */
export function loginKeys(clientAddress: string, userName: string): string[] {
  return [`addr:${addressKey(clientAddress)}`, `user:${userName.normalize('NFKC').toLowerCase()}`];
}

/**
 * One key per IPv4 address and per IPv6 /64 (a single host is usually given a whole /64, so counting
 * its addresses one by one would not limit it); `::ffff:a.b.c.d` is the IPv4 address it carries.
 */
export function addressKey(address: string): string {
  const a = address.trim().toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(':')) return a;
  const [head = '', tail = ''] = a.split('::', 2);
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = a.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = a.includes('::')
    ? [...headGroups, ...Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0'), ...tailGroups]
    : headGroups;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export class LoginRateLimiter {
  private readonly entries = new Map<string, Entry>();
  private readonly limits: Required<RateLimitOptions>;

  constructor(
    private readonly clock: Clock,
    options: RateLimitOptions = {},
  ) {
    this.limits = { ...DEFAULT_RATE_LIMITS, ...options };
  }

  /** LFB_ERR_RATE_LIMITED (details.retryAfterSeconds) while any of the keys is locked out. */
  check(keys: readonly string[]): void {
    const now = this.clock.now().getTime();
    let until = 0;
    for (const key of keys) {
      const e = this.current(key, now);
      if (e && e.lockedUntilMs > now) until = Math.max(until, e.lockedUntilMs);
    }
    if (until === 0) return;
    const retryAfterSeconds = Math.ceil((until - now) / 1000);
    throw new LifeboatError('LFB_ERR_RATE_LIMITED', `too many failed logins; try again in ${retryAfterSeconds} s`, { details: { retryAfterSeconds } });
  }

  recordFailure(keys: readonly string[]): void {
    const now = this.clock.now().getTime();
    for (const key of keys) {
      const e = this.current(key, now) ?? { failures: 0, lastFailureMs: now, lockedUntilMs: 0 };
      e.failures += 1;
      e.lastFailureMs = now;
      const over = e.failures - this.limits.maxFailures;
      if (over >= 0) e.lockedUntilMs = now + Math.min(this.limits.maxLockoutMs, this.limits.baseLockoutMs * 2 ** Math.min(over, 30));
      // Re-inserting moves the key to the end: the Map's order is least recently failed first.
      this.entries.delete(key);
      this.entries.set(key, e);
    }
    while (this.entries.size > this.limits.maxKeys) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  recordSuccess(keys: readonly string[]): void {
    for (const key of keys) this.entries.delete(key);
  }

  /** How many keys are tracked (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  private current(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e && e.lockedUntilMs <= now && now - e.lastFailureMs >= this.limits.forgetAfterMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }
}
