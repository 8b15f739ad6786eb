import { readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { BlockKeys } from './seal.js';

/**
 * The unwrapped keys of this process, only in memory: by key id (readers find
 * them from a file's header) and by repository folder (writers find them from
 * the path of the file they create). Filled when an encrypted repository is
 * opened with its password; nothing here is ever written.
 */
const byId = new Map<string, BlockKeys>();
const byRoot = new Map<string, BlockKeys>();

export function rememberKeys(root: string, keys: BlockKeys): void {
  byId.set(keys.keyId, keys);
  byRoot.set(resolve(root), keys);
}

export function knownKeys(keyId: string): BlockKeys | undefined {
  return byId.get(keyId);
}

/** The keys a file with this key id is read with; LFB_ERR_PASSWORD_REQUIRED when its repository was not unlocked. */
export function keysFor(keyId: string, file: string): BlockKeys {
  const k = byId.get(keyId);
  if (k === undefined)
    throw new LifeboatError(
      'LFB_ERR_PASSWORD_REQUIRED',
      `${file} is encrypted and its repository was not unlocked: give the password (--password-file or LIFEBOAT_PASSWORD_FILE)`,
      {
        details: { file, keyId },
      },
    );
  return k;
}

/** The keys of the encrypted repository holding `path`, or undefined (a plain repository). */
export function keysForPath(path: string): BlockKeys | undefined {
  const p = resolve(path);
  for (const [root, keys] of byRoot) if (p.startsWith(root + sep)) return keys;
  return undefined;
}

/** Where a password comes from when an encrypted repository is opened: set by the CLI (--password-file, a prompt). */
export type PasswordSource = (why: string) => Promise<string>;
let source: PasswordSource | undefined;

export function setPasswordSource(s: PasswordSource | undefined): void {
  source = s;
}

/** A password file's content without one trailing line end. */
export function readPasswordFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LifeboatError('LFB_ERR_PASSWORD_REQUIRED', `cannot read the password file ${path}: ${(err as Error).message}`, { details: { file: path } });
  }
  return text.replace(/\r?\n$/, '');
}

/** The password: the CLI's source first, then LIFEBOAT_PASSWORD_FILE; LFB_ERR_PASSWORD_REQUIRED when there is none. */
export async function askPassword(why: string): Promise<string> {
  if (source !== undefined) return source(why);
  const file = process.env['LIFEBOAT_PASSWORD_FILE'];
  if (file !== undefined && file !== '') return readPasswordFile(file);
  throw new LifeboatError('LFB_ERR_PASSWORD_REQUIRED', `${why} is encrypted: give its password with --password-file <file> or LIFEBOAT_PASSWORD_FILE`);
}
