/**
 * The password of an encrypted repository, for every command: `--password-file <file>`
 * (taken out of the arguments by main, so every command that opens a repository has
 * it), else LIFEBOAT_PASSWORD_FILE, else a prompt when standard input is a terminal.
 * Never a flag holding the password itself (it would show in `ps` and shell history).
 */
import type { ReadStream } from 'node:tty';
import { LifeboatError } from '../core/errors.js';
import { readPasswordFile, setPasswordSource } from '../crypto/index.js';
import { promptHidden, readNewPassword } from './password-input.js';

/** argv without `--password-file <file>` / `--password-file=<file>`, and the file. */
export function takePasswordFileFlag(argv: readonly string[]): { argv: string[]; file: string | undefined } {
  const out: string[] = [];
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (a === '--password-file') {
      file = argv[i + 1];
      if (file === undefined) throw new LifeboatError('LFB_ERR_USAGE', '--password-file needs a file');
      i += 1;
    } else if (a.startsWith('--password-file=')) file = a.slice('--password-file='.length);
    else out.push(a);
  }
  return { argv: out, file };
}

function fromFiles(file: string | undefined): string | undefined {
  if (file !== undefined) return readPasswordFile(file);
  const env = process.env['LIFEBOAT_PASSWORD_FILE'];
  if (env !== undefined && env !== '') return readPasswordFile(env);
  return undefined;
}

/** Encrypted repositories opened by this command ask for their password here. */
export function installPasswordSource(file: string | undefined): void {
  setPasswordSource(async (why) => {
    const p = fromFiles(file);
    if (p !== undefined) return p;
    const stdin = process.stdin as ReadStream;
    if (stdin.isTTY === true) return promptHidden(`password of ${why}: `, stdin, process.stderr);
    throw new LifeboatError(
      'LFB_ERR_PASSWORD_REQUIRED',
      `${why} is encrypted: give its password with --password-file <file> or LIFEBOAT_PASSWORD_FILE (standard input is not a terminal to ask)`,
    );
  });
}

/** A new repository password (`repo init --encrypt`, `repo passwd`): from `file` (or LIFEBOAT_PASSWORD_FILE when `file` is the default), else typed twice. */
export async function newRepositoryPassword(file: string | undefined, useEnv: boolean): Promise<string> {
  const p = file !== undefined ? readPasswordFile(file) : useEnv ? fromFiles(undefined) : undefined;
  if (p !== undefined) return p;
  if ((process.stdin as ReadStream).isTTY !== true)
    throw new LifeboatError('LFB_ERR_PASSWORD_REQUIRED', 'no password given: pass a password file (standard input is not a terminal to ask)');
  return readNewPassword('the repository', false);
}
