/**
 * Password hashes: scrypt (node:crypto, RFC 7914), stored as a self-describing
 * string `scrypt$N$r$p$salt$hash` (salt and hash base64url). Verification
 * reads the parameters from the string, so raising them later only changes
 * how new hashes are made; old ones keep verifying.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';

export interface ScryptParams {
  /** CPU/memory cost: a power of two. Memory used is 128 · N · r bytes. */
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/**
 * N=2^15, r=8: 32 MiB and one scrypt pass per hash (measured in docs/design.md §Authentication).
 * OWASP's password-storage guidance lists N=2^17 r=8 p=1 (128 MiB) or N=2^15 r=8 p=3 as its minimum;
 * 32 MiB keeps a burst of logins within a small backup server's memory, and the stored string carries
 * the parameters, so they can be raised without invalidating existing hashes.
 */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };

export const MIN_PASSWORD_LENGTH = 8;
/** Longer passwords are refused when set and fail when checked: a peer's input stays bounded. */
export const MAX_PASSWORD_LENGTH = 1024;

const SALT_BYTES = 16;
const KEY_BYTES = 32;
// A stored hash comes from the catalog: parameters beyond these are refused rather than run (a tampered or
// corrupt row must not make one login take minutes or gigabytes).
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;

/**
 * scrypt runs on libuv's thread pool (4 threads by default), which file reads and writes share: a burst
 * of logins from many addresses must not take all of it from running backups. At most two hashes run
 * at once; the rest wait their turn.
 */
const MAX_CONCURRENT_HASHES = 2;
let hashesRunning = 0;
const waitingForHash: (() => void)[] = [];

async function fewHashesAtATime<T>(fn: () => Promise<T>): Promise<T> {
  if (hashesRunning >= MAX_CONCURRENT_HASHES) await new Promise<void>((resolve) => waitingForHash.push(resolve));
  else hashesRunning++;
  try {
    return await fn();
  } finally {
    // The slot passes straight to the next waiter (the count stays), or is given back.
    const next = waitingForHash.shift();
    if (next) next();
    else hashesRunning--;
  }
}

/** How many hashes run and how many wait (for tests and metrics). */
export function hashQueue(): { readonly running: number; readonly waiting: number } {
  return { running: hashesRunning, waiting: waitingForHash.length };
}

function scryptAsync(password: string, salt: Buffer, keyLength: number, params: ScryptParams): Promise<Buffer> {
  return fewHashesAtATime(() => scryptOnce(password, salt, keyLength, params));
}

function scryptOnce(password: string, salt: Buffer, keyLength: number, params: ScryptParams): Promise<Buffer> {
  // maxmem: node refuses anything above 32 MiB by default, which is exactly 2^15 · 8 · 128; leave headroom.
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 2 * 128 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The same password typed on different keyboards (composed or decomposed accents) hashes the same (NIST SP 800-63B 5.1.1.2). */
function normalize(password: string): string {
  return password.normalize('NFKC');
}

function characterCount(s: string): number {
  return [...s].length;
}

/** LFB_ERR_INVALID_ARGUMENT unless the password may be set: at least 8 and at most 1024 characters. */
export function checkNewPassword(password: string): void {
  const n = characterCount(normalize(password));
  if (n === 0) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'the password is empty');
  if (n < MIN_PASSWORD_LENGTH)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `the password has ${n} characters; it needs at least ${MIN_PASSWORD_LENGTH}`);
  if (n > MAX_PASSWORD_LENGTH)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `the password has ${n} characters; at most ${MAX_PASSWORD_LENGTH} are accepted`);
}

/** A new hash of a password that passes checkNewPassword (a fresh random salt each time). */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  checkNewPassword(password);
  checkParams(params, 'hashPassword');
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(normalize(password), salt, KEY_BYTES, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function checkParams(params: ScryptParams, where: string): void {
  const { N, r, p } = params;
  const ok =
    Number.isInteger(N) &&
    N >= 2 &&
    N <= MAX_N &&
    (N & (N - 1)) === 0 &&
    Number.isInteger(r) &&
    r >= 1 &&
    r <= MAX_R &&
    Number.isInteger(p) &&
    p >= 1 &&
    p <= MAX_P;
  if (!ok)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `${where}: scrypt parameters N=${N} r=${r} p=${p} are outside N=2..2^20 (a power of two), r=1..32, p=1..16`,
    );
}

/** Reads `scrypt$N$r$p$salt$hash`; LFB_ERR_CATALOG when the stored string is not one (a damaged or foreign row). */
export function parsePasswordHash(stored: string): ParsedHash {
  const bad = (why: string): LifeboatError => new LifeboatError('LFB_ERR_CATALOG', `a stored password hash is not one Lifeboat reads: ${why}`);
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt')
    throw bad(`expected scrypt$N$r$p$salt$hash, found ${parts.length} fields starting "${(parts[0] ?? '').slice(0, 16)}"`);
  const [N, r, p] = parts.slice(1, 4).map((s) => (/^[0-9]{1,8}$/.test(s) ? Number(s) : NaN)) as [number, number, number];
  try {
    checkParams({ N, r, p }, 'stored hash');
  } catch (err) {
    throw bad((err as Error).message);
  }
  const salt = Buffer.from(parts[4]!, 'base64url');
  const key = Buffer.from(parts[5]!, 'base64url');
  if (salt.length < 8 || key.length < 16 || key.length > 64) throw bad(`salt of ${salt.length} bytes, hash of ${key.length} bytes`);
  return { params: { N, r, p }, salt, key };
}

/** Whether `password` is the one `stored` was made from. The comparison takes the same time wherever the keys differ. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const { params, salt, key } = parsePasswordHash(stored);
  const normalized = normalize(password);
  // Still hash a too-long or empty password: how long a refusal takes says nothing about why.
  const tooLong = characterCount(normalized) > MAX_PASSWORD_LENGTH;
  const candidate = await scryptAsync(tooLong ? normalized.slice(0, MAX_PASSWORD_LENGTH) : normalized, salt, key.length, params);
  return timingSafeEqual(candidate, key) && !tooLong && normalized.length > 0;
}
