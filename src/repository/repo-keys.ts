import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { askPassword, deriveBlockKeys, knownKeys, rememberKeys, rewrapKeyFile, unwrapDataKey, type BlockKeys, type KeyFile } from '../crypto/index.js';
import { localStorage, type Storage } from '../storage/index.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';

/** The key file of an encrypted repository, relative to its folder (docs/format.md §Encryption). */
export const KEY_FILE = join('keys', 'key.json');

/** What lifeboat.json says of an encrypted repository; the key material itself is in KEY_FILE. */
export interface EncryptionConfig {
  readonly keyId: string;
  readonly cipher: 'aes-256-gcm';
  readonly digest: 'hmac-sha256';
}

export async function readKeyFile(root: string, keyId: string, storage: Storage = localStorage): Promise<KeyFile> {
  const file = await readCheckedJson<KeyFile>(join(root, KEY_FILE), 'LFB_ERR_REPO_CORRUPT', storage);
  if (file.keyId !== keyId)
    throw new LifeboatError('LFB_ERR_REPO_CORRUPT', `${join(root, KEY_FILE)} holds key ${file.keyId}, but lifeboat.json names ${keyId}`, {
      details: { repo: root },
    });
  return file;
}

export async function writeKeyFile(root: string, file: KeyFile, storage: Storage = localStorage): Promise<void> {
  await storage.mkdir(join(root, 'keys'));
  await writeCheckedJson(join(root, KEY_FILE), file, storage);
}

/**
 * The keys of an encrypted repository, unwrapped with its password (asked
 * once per process: the keyring keeps them in memory) and remembered for its
 * folder, so every reader and writer of its files finds them.
 * LFB_ERR_PASSWORD_REQUIRED or LFB_ERR_WRONG_PASSWORD before any work.
 */
export async function unlockRepository(root: string, enc: EncryptionConfig, storage: Storage = localStorage): Promise<BlockKeys> {
  const known = knownKeys(enc.keyId);
  if (known !== undefined) {
    rememberKeys(root, known);
    return known;
  }
  const file = await readKeyFile(root, enc.keyId, storage);
  const password = await askPassword(`repository ${root}`);
  const keys = deriveBlockKeys(file.keyId, await unwrapDataKey(file, { password }));
  rememberKeys(root, keys);
  return keys;
}

/** `repo passwd`: the data key unwrapped with the old password (or the recovery key) and wrapped by the new one; no data is rewritten. */
export async function changeRepositoryPassword(
  root: string,
  enc: EncryptionConfig,
  secret: { password: string } | { recoveryKey: string },
  newPassword: string,
  storage: Storage = localStorage,
): Promise<void> {
  const file = await readKeyFile(root, enc.keyId, storage);
  const dataKey = await unwrapDataKey(file, secret);
  await writeKeyFile(root, rewrapKeyFile(file, dataKey, newPassword), storage);
}

/** The keys of an unlocked repository, as another thread (the server's data mover) receives them. */
export type RepositoryKeys = BlockKeys;

/** Keys unlocked elsewhere (the server's main thread, or the command that started this process) made known to this thread's keyring. */
export function adoptRepositoryKeys(root: string, keys: RepositoryKeys): void {
  rememberKeys(root, keys);
}

/** Unlocked keys as one line of text, for a process this one starts (written to its standard input, never its arguments or environment). */
export function repositoryKeysText(keys: RepositoryKeys): string {
  return JSON.stringify({ keyId: keys.keyId, seal: Buffer.from(keys.seal).toString('base64'), mac: Buffer.from(keys.mac).toString('base64') });
}

/** The keys repositoryKeysText wrote; LFB_ERR_INVALID_ARGUMENT when the text is not such keys. */
export function repositoryKeysFromText(text: string): RepositoryKeys {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as { keyId?: unknown; seal?: unknown; mac?: unknown };
  if (typeof o.keyId !== 'string' || typeof o.seal !== 'string' || typeof o.mac !== 'string')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'the repository keys handed to this process are not keys');
  const seal = Buffer.from(o.seal, 'base64');
  const mac = Buffer.from(o.mac, 'base64');
  if (seal.length !== 32 || mac.length !== 32)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'the repository keys handed to this process have the wrong length');
  return { keyId: o.keyId, seal, mac };
}
