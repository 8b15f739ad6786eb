/**
 * Reading a new password: from standard input (--password-stdin, for scripts),
 * or typed twice at a terminal without echo. Never from a command-line flag:
 * those show in `ps` and in shell history.
 */
import type { Readable } from 'node:stream';
import type { ReadStream } from 'node:tty';
import { LifeboatError } from '../core/errors.js';
import { checkNewPassword, MAX_PASSWORD_LENGTH } from '../auth/index.js';

/** Four bytes per character at most, and a line end. */
const MAX_STDIN_BYTES = MAX_PASSWORD_LENGTH * 4 + 2;

/** Everything on `input` up to its end, without one trailing line end (`echo pw |` adds one). */
export async function readPasswordFrom(input: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += b.length;
    if (size > MAX_STDIN_BYTES) {
      input.destroy();
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `standard input has more than ${MAX_STDIN_BYTES} bytes: not a password`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** One line typed at the terminal, not echoed. Backspace and Ctrl-U edit; Ctrl-C and Ctrl-D (on an empty line) give up. */
export function promptHidden(prompt: string, input: ReadStream, output: NodeJS.WritableStream): Promise<string> {
  // Echo goes off before the prompt shows: an answer typed the moment it appears must not be echoed.
  input.setRawMode(true);
  input.setEncoding('utf8');
  input.resume();
  output.write(prompt);
  return new Promise((resolve, reject) => {
    let typed: string[] = [];
    const finish = (err: LifeboatError | undefined): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(typed.join(''));
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish(undefined);
        if (ch === '\u0003') return finish(new LifeboatError('LFB_ERR_INTERRUPTED', 'password entry interrupted'));
        if (ch === '\u0004') {
          if (typed.length === 0) return finish(new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'no password given (end of input)'));
          continue;
        }
        if (ch === '\u007f' || ch === '\b') typed.pop();
        else if (ch === '\u0015') typed = [];
        else if (ch >= ' ') typed.push(ch);
        if (typed.length > MAX_PASSWORD_LENGTH)
          return finish(new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a password has at most ${MAX_PASSWORD_LENGTH} characters`));
      }
    };
    input.on('data', onData);
  });
}

/**
 * The new password for `user`: from standard input when `fromStdin`, else asked twice at the terminal.
 * LFB_ERR_USAGE when standard input is not a terminal and --password-stdin was not given (a script
 * would otherwise hang on a prompt nobody sees).
 */
export async function readNewPassword(user: string, fromStdin: boolean): Promise<string> {
  if (fromStdin) return readPasswordFrom(process.stdin);
  const stdin = process.stdin as ReadStream;
  if (stdin.isTTY !== true)
    throw new LifeboatError('LFB_ERR_USAGE', 'standard input is not a terminal: pass the password on standard input with --password-stdin');
  const first = await promptHidden(`password for ${user}: `, stdin, process.stderr);
  // Said now, not after typing it twice.
  checkNewPassword(first);
  const second = await promptHidden(`password for ${user} (again): `, stdin, process.stderr);
  if (first !== second) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'the two passwords differ; nothing was changed');
  return first;
}
