import { createHash, hkdfSync, randomBytes, randomUUID, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';
import { openBytes, sealBytes, type BlockKeys } from './seal.js';

/**
 * The key file of an encrypted repository (`<repo>/keys/key.json`, docs/format.md
 * §Encryption): a random 256-bit data key, wrapped (AES-256-GCM) by a key derived
 * from the password with scrypt, and optionally by a random recovery key. The
 * data key itself is never stored; its sub-keys (HKDF-SHA-256) seal and digest.
 */
export interface KeyFile {
  readonly format: 'lifeboat-key';
  readonly version: 1;
  readonly keyId: string;
  readonly createdAt: string;
  readonly kdf: { readonly name: 'scrypt'; readonly N: number; readonly r: number; readonly p: number; readonly salt: string };
  /** The data key sealed under the password's key (base64 of nonce · ciphertext · tag). */
  readonly password: string;
  /** The data key sealed under the recovery key's wrapping key, when init made one. */
  readonly recovery?: string | undefined;
}

/** scrypt cost: 2^15 × 8 × 128 B = 32 MiB of memory, about 0.1 s here. */
export const SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;
const MAXMEM = 96 * 1024 * 1024;

function scryptArgs(password: string, kdf: KeyFile['kdf']): [string, Buffer, number, ScryptOptions] {
  return [password.normalize('NFC'), Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: MAXMEM }];
}

function passwordKey(password: string, kdf: KeyFile['kdf']): Buffer {
  return scryptSync(...scryptArgs(password, kdf));
}

/**
 * The same key on libuv's thread pool: unlocking takes about 0.15 s, during
 * which other threads go on (a backup's block workers load meanwhile).
 */
function passwordKeyLater(password: string, kdf: KeyFile['kdf']): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(...scryptArgs(password, kdf), (err, key) => (err ? reject(err) : resolve(key))));
}

function recoveryWrapKey(recoveryKey: Buffer, keyId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', recoveryKey, Buffer.from(keyId), 'lifeboat recovery wrap v1', 32));
}

/** The sub-keys of a data key: one seals, one keys the digests. */
export function deriveBlockKeys(keyId: string, dataKey: Uint8Array): BlockKeys {
  const salt = Buffer.from(keyId);
  return {
    keyId,
    seal: Buffer.from(hkdfSync('sha256', dataKey, salt, 'lifeboat seal v1', 32)),
    mac: Buffer.from(hkdfSync('sha256', dataKey, salt, 'lifeboat digest v1', 32)),
  };
}

const aadOf = (keyId: string, what: string): Buffer => Buffer.from(`lifeboat-key:${keyId}:${what}`);

/** A recovery key as printed: 64 hex digits in groups of 8. */
export function formatRecoveryKey(k: Buffer): string {
  return k.toString('hex').match(/.{8}/g)!.join('-');
}

export function parseRecoveryKey(text: string): Buffer {
  const hex = text.replace(/[\s-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a recovery key is 64 hexadecimal digits (dashes and spaces allowed)');
  return Buffer.from(hex, 'hex');
}

function wrapWithPassword(keyId: string, dataKey: Buffer, password: string): { kdf: KeyFile['kdf']; password: string } {
  const kdf = { name: 'scrypt' as const, ...SCRYPT, salt: randomBytes(16).toString('base64') };
  return { kdf, password: sealBytes(passwordKey(password, kdf), dataKey, aadOf(keyId, 'password')).toString('base64') };
}

/** A new data key, wrapped by `password` and, with `recovery`, by a new recovery key (returned once, to be printed). */
export function newKeyFile(password: string, now: Date, recovery: boolean): { file: KeyFile; keys: BlockKeys; recoveryKey?: string } {
  checkPassword(password);
  const keyId = randomUUID();
  const dataKey = randomBytes(32);
  const rk = recovery ? randomBytes(32) : undefined;
  const file: KeyFile = {
    format: 'lifeboat-key',
    version: 1,
    keyId,
    createdAt: now.toISOString(),
    ...wrapWithPassword(keyId, dataKey, password),
    ...(rk ? { recovery: sealBytes(recoveryWrapKey(rk, keyId), dataKey, aadOf(keyId, 'recovery')).toString('base64') } : {}),
  };
  return { file, keys: deriveBlockKeys(keyId, dataKey), ...(rk ? { recoveryKey: formatRecoveryKey(rk) } : {}) };
}

export function checkPassword(password: string): void {
  if (password.length === 0) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'the repository password is empty');
}

/** The data key, unwrapped by the password or the recovery key; LFB_ERR_WRONG_PASSWORD when neither opens it. */
export async function unwrapDataKey(file: KeyFile, secret: { password: string } | { recoveryKey: string }): Promise<Buffer> {
  if (file.format !== 'lifeboat-key' || file.version !== 1)
    throw new LifeboatError('LFB_ERR_REPO_CORRUPT', `key file: format ${String(file.format)} version ${String(file.version)} is not known`);
  let key: Buffer | null;
  if ('password' in secret) {
    key = openBytes(await passwordKeyLater(secret.password, file.kdf), Buffer.from(file.password, 'base64'), aadOf(file.keyId, 'password'));
  } else {
    if (file.recovery === undefined) throw new LifeboatError('LFB_ERR_WRONG_PASSWORD', 'this repository has no recovery key (made without one)');
    key = openBytes(recoveryWrapKey(parseRecoveryKey(secret.recoveryKey), file.keyId), Buffer.from(file.recovery, 'base64'), aadOf(file.keyId, 'recovery'));
  }
  if (key === null)
    throw new LifeboatError(
      'LFB_ERR_WRONG_PASSWORD',
      'password' in secret ? 'wrong password for this encrypted repository' : 'wrong recovery key for this encrypted repository',
      { details: { keyId: file.keyId } },
    );
  return key;
}

/** The key file with the data key wrapped by a new password (new salt); the data and the recovery wrapping are unchanged. */
export function rewrapKeyFile(file: KeyFile, dataKey: Buffer, newPassword: string): KeyFile {
  checkPassword(newPassword);
  return { ...file, ...wrapWithPassword(file.keyId, dataKey, newPassword) };
}

/** A short fingerprint of the key material (for `repo key export` and logs): never the key. */
export function keyFingerprint(keys: BlockKeys): string {
  return createHash('sha256').update(keys.mac).update('fingerprint').digest('hex').slice(0, 16);
}

export function sameKeys(a: BlockKeys, b: BlockKeys): boolean {
  return a.keyId === b.keyId && timingSafeEqual(a.seal, b.seal);
}
