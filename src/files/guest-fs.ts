/**
 * The guest's file systems read through the appliance's own calls, with no
 * FUSE tree: listings from `ls0` + `lstatnslist` + `readlinklist`, walks
 * from `find0`, bytes from `download` and `tar-out` (what virt-copy-out
 * uses), each streamed by the appliance at its own pace instead of 128 KiB
 * FUSE reads, each a round trip.
 *
 * `guestfish --remote` runs a command inside the server's process, so a
 * command's file output (`download /x <file>`) is written by the server:
 * a stream goes through a named pipe in the browse's private (0700) folder,
 * read by a child `dd` whose standard output is a pipe to this process.
 * guestfish writes the appliance's stream in 8 KiB pieces; `dd` gathers
 * them into 256 KiB writes (`iflag=fullblock`), so this process, whose main
 * thread also answers the appliance's NBD reads, takes the stream in reads
 * of Node's 64 KiB instead of 8 KiB: 705 instead of 5,253 for the 43 MB
 * tar-out stream of a 10,000-file folder (`cat` passed on each piece).
 * Never Node's fs on the FIFO: its reads would wait in libuv's thread pool
 * until the appliance writes, and the appliance waits for this process's
 * NBD answers, which read backup files on that same pool.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { LifeboatError } from '../core/errors.js';
import { tail, type Guestfish } from './guestfish.js';
import type { MemberStat } from './tar-stream.js';

/** A download of hours over a TCG appliance is slow, but a hung one must still end. */
const STREAM_TIMEOUT_MS = 6 * 3600_000;
/** What the stream's reader (dd) gathers before each write to this process. */
const READER_BLOCK_BYTES = 256 * 1024;
/** lstatnslist and readlinklist take their names as one argument (at most 128 KiB on Linux): a batch stays well under. */
const BATCH_NAMES = 1000;
const BATCH_BYTES = 60 * 1024;
const MAX_SYMLINK_HOPS = 40;

/** What the appliance's lstat says of a path (guestfs_statns). */
export interface GuestStat extends MemberStat {
  readonly ino: number;
  readonly nlink: number;
  readonly blocks: number;
}

const S_IFMT = 0o170000;
const TYPES: Record<number, GuestStat['type']> = {
  0o040000: 'directory',
  0o100000: 'file',
  0o120000: 'symlink',
  0o060000: 'block-device',
  0o020000: 'char-device',
  0o010000: 'fifo',
  0o140000: 'socket',
};

/** guestfish prints a statns struct as `st_dev: 2049` lines (in `[n] = { … }` blocks for a list): one record per st_dev. */
function parseStats(text: string): Record<string, number>[] {
  const out: Record<string, number>[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(st_\w+): (-?\d+)\s*$/.exec(line);
    if (!m) continue;
    if (m[1] === 'st_dev') out.push({});
    const rec = out[out.length - 1];
    if (rec !== undefined) rec[m[1]!] = Number(m[2]);
  }
  return out;
}

function statOf(r: Record<string, number>): GuestStat | undefined {
  if (r['st_ino'] === -1 || r['st_mode'] === undefined) return undefined;
  const mode = r['st_mode'];
  return {
    type: TYPES[mode & S_IFMT] ?? 'file',
    mode: mode & 0o7777,
    uid: r['st_uid'] ?? 0,
    gid: r['st_gid'] ?? 0,
    size: r['st_size'] ?? 0,
    mtimeSec: r['st_mtime_sec'] ?? 0,
    mtimeNsec: r['st_mtime_nsec'] ?? 0,
    rdev: r['st_rdev'] ?? 0,
    ino: r['st_ino'] ?? 0,
    nlink: r['st_nlink'] ?? 1,
    blocks: r['st_blocks'] ?? 0,
  };
}

/**
 * One name as an item of a guestfish string list (`lstatnslist dir 'a' 'b c'`):
 * single-quoted, a quote inside written \', and backslashes at the end left
 * outside the quotes, where no quote follows them (guestfish's parser reads
 * a backslash before a quote as an escaped quote, in or out of quotes).
 */
export function stringListItem(name: string): string {
  const trailing = /\\+$/.exec(name)?.[0] ?? '';
  return `'${name.slice(0, name.length - trailing.length).replace(/'/g, "\\'")}'${trailing}`;
}

function batches(names: readonly string[]): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let bytes = 0;
  for (const n of names) {
    const b = Buffer.byteLength(stringListItem(n)) + 1;
    if (cur.length > 0 && (cur.length >= BATCH_NAMES || bytes + b > BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(n);
    bytes += b;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

const isMissing = (stderr: string): boolean => /No such file or directory|Not a directory/.test(stderr);

/** A stream of bytes the appliance writes: `done` settles once the command and its reader have ended. */
export interface GuestStream {
  readonly stream: Readable;
  readonly done: Promise<void>;
  /** The reader went away: stop the appliance's transfer. */
  cancel(): void;
}

export class GuestFs {
  private outputs = 0;

  constructor(
    private readonly gf: Guestfish,
    /** The browse's private folder (0700): named pipes and listing files. */
    private readonly workDir: string,
  ) {}

  private failure(cmd: string, path: string, stderr: string): LifeboatError {
    if (isMissing(stderr)) return new LifeboatError('LFB_ERR_FILE_NOT_FOUND', `${path} does not exist at this point`, { details: { path } });
    return new LifeboatError('LFB_ERR_GUESTFS', `guestfish ${cmd} ${path} failed: ${tail(stderr)}`, { details: { command: cmd } });
  }

  /** The path's lstat; undefined when it does not exist. */
  async lstat(path: string): Promise<GuestStat | undefined> {
    const r = await this.gf.remote('lstatns', path);
    if (!r.ok) {
      if (isMissing(r.stderr)) return undefined;
      throw this.failure('lstatns', path, r.stderr);
    }
    const rec = parseStats(r.stdout)[0];
    return rec === undefined ? undefined : statOf(rec);
  }

  async readlink(path: string): Promise<string> {
    const r = await this.gf.remote('readlink', path);
    if (!r.ok) throw this.failure('readlink', path, r.stderr);
    return r.stdout.endsWith('\n') ? r.stdout.slice(0, -1) : r.stdout;
  }

  /** A command that writes a file of NUL-separated names on the host (ls0, find0): the names. */
  private async names(cmd: string, dir: string): Promise<string[]> {
    const file = join(this.workDir, `${cmd}-${++this.outputs}`);
    try {
      const r = await this.gf.queued(cmd, [dir, file], { timeoutMs: STREAM_TIMEOUT_MS });
      if (!r.ok) throw this.failure(cmd, dir, r.stderr);
      return (await readFile(file, 'utf8')).split('\0').filter((n) => n !== '');
    } finally {
      await rm(file, { force: true });
    }
  }

  /** A folder's names (unsorted). */
  readdir(dir: string): Promise<string[]> {
    return this.names('ls0', dir);
  }

  /** Every path under `dir`, as `/rel/path` (find0: the folder itself left out). */
  walk(dir: string): Promise<string[]> {
    return this.names('find0', dir);
  }

  /** The lstat of each name of `dir`, in order; undefined for a name that could not be read. */
  async lstatList(dir: string, names: readonly string[]): Promise<(GuestStat | undefined)[]> {
    const out: (GuestStat | undefined)[] = [];
    for (const batch of batches(names)) {
      const r = await this.gf.remote('lstatnslist', dir, batch.map(stringListItem).join(' '));
      if (!r.ok) throw this.failure('lstatnslist', dir, r.stderr);
      const stats = parseStats(r.stdout);
      if (stats.length !== batch.length) throw new LifeboatError('LFB_ERR_GUESTFS', `lstatnslist ${dir}: ${stats.length} answers for ${batch.length} names`);
      out.push(...stats.map(statOf));
    }
    return out;
  }

  /** The targets of symlinks `names` of `dir`, in order (one readlink each when a target holds a newline). */
  async readlinkList(dir: string, names: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const batch of batches(names)) {
      const r = await this.gf.remote('readlinklist', dir, batch.map(stringListItem).join(' '));
      const lines = r.stdout.endsWith('\n') ? r.stdout.slice(0, -1).split('\n') : r.stdout.split('\n');
      if (r.ok && lines.length === batch.length) out.push(...lines);
      else for (const n of batch) out.push(await this.readlink(`${dir === '/' ? '' : dir}/${n}`));
    }
    return out;
  }

  /**
   * Resolves the folders `parts` under the file system's folder `root` one
   * at a time, as the guest would: the folder's appliance path, 'outside'
   * when a symlink on the way leaves the file system (an absolute target,
   * or `..` above its root: the guest's `/` is not the appliance's, and the
   * host's realpath never sees it), 'missing' when one does not exist.
   */
  async resolveDir(root: string, parts: readonly string[]): Promise<string | 'outside' | 'missing'> {
    const resolved: string[] = [];
    const todo = [...parts];
    let hops = 0;
    while (todo.length > 0) {
      const part = todo.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (resolved.pop() === undefined) return 'outside';
        continue;
      }
      const path = [root, ...resolved, part].join('/');
      const st = await this.lstat(path);
      if (st === undefined) return 'missing';
      if (st.type === 'symlink') {
        const target = await this.readlink(path);
        if (target.startsWith('/')) return 'outside';
        if (++hops > MAX_SYMLINK_HOPS) return 'missing';
        todo.unshift(...target.split('/'));
        continue;
      }
      if (st.type !== 'directory') return 'missing';
      resolved.push(part);
    }
    return [root, ...resolved].join('/');
  }

  /**
   * Runs `cmd` with a named pipe as its output file (`args(fifo)`) and
   * streams what the appliance writes there. The stream ends only once the
   * command has succeeded; a failed command destroys it with the error.
   */
  async streamOut(cmd: string, args: (fifo: string) => string[], path: string): Promise<GuestStream> {
    const fifo = join(this.workDir, `${cmd}-${++this.outputs}.fifo`);
    await new Promise<void>((resolve, reject) =>
      execFile('mkfifo', ['-m', '600', '--', fifo], (err) =>
        err ? reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `mkfifo failed: ${err.message}`)) : resolve(),
      ),
    );
    const reader = spawn('dd', [`if=${fifo}`, `bs=${READER_BLOCK_BYTES}`, 'iflag=fullblock', 'status=none'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new PassThrough();
    reader.stdout.pipe(out, { end: false });
    let readerStderr = '';
    reader.stderr.on('data', (d: Buffer) => (readerStderr = (readerStderr + d.toString()).slice(-2000)));
    const readerEnded = new Promise<number | null>((resolve) => {
      reader.on('error', (err) => {
        readerStderr = `dd could not be started: ${err.message}`;
        resolve(-1);
      });
      reader.on('close', (code) => resolve(code));
    });
    const abort = new AbortController();
    let started = false;
    let ended = false;
    let cancelled = false;
    /** The reader failed while the command still ran (it waits for a reader of the pipe): the command was stopped. */
    let readerFailedFirst = false;
    let poke: NodeJS.Timeout | undefined;
    const command = this.gf.queued(cmd, args(fifo), { timeoutMs: STREAM_TIMEOUT_MS, signal: abort.signal, onStart: () => (started = true) }).finally(() => {
      ended = true;
      clearInterval(poke);
    });
    // A command that failed before it opened the pipe leaves the reader waiting for a writer.
    void command.then(
      (r) => r.ok || reader.kill('SIGKILL'),
      () => reader.kill('SIGKILL'),
    );
    const done = (async () => {
      try {
        const [r, code] = await Promise.all([command, readerEnded]);
        if (cancelled) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the reader of ${path} went away`);
        // The command was stopped because of its reader: the reader's words say what went wrong.
        if (!r.ok && !readerFailedFirst) throw this.failure(cmd, path, r.stderr);
        if (code !== 0) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `reading ${path} from the appliance failed: ${readerStderr.trim()}`);
      } finally {
        await rm(fifo, { force: true });
      }
    })();
    let settled = false;
    done.then(
      () => {
        settled = true;
        out.end();
      },
      (err: Error) => {
        settled = true;
        out.destroy(err);
      },
    );
    // Destroyed by its reader before the end: nobody reads the pipe any more.
    out.once('close', () => {
      if (!settled) cancel();
    });
    const stopCommand = (): void => {
      if (ended || poke !== undefined) return;
      abort.abort();
      // A started command may still be waiting to open the pipe for writing: an open of its reading end wakes it, and
      // its first write then fails (EPIPE: the server ignores SIGPIPE), which cancels the transfer; the server goes on.
      if (started)
        poke = setInterval(() => {
          try {
            closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
          } catch {
            // gone: the command has ended
          }
        }, 100);
    };
    const cancel = (): void => {
      if (cancelled || ended) return;
      cancelled = true;
      reader.kill('SIGKILL');
      stopCommand();
    };
    // A reader that failed (or never started) leaves the command waiting for one to open the pipe, for hours.
    void readerEnded.then((code) => {
      if (code === 0 || cancelled || ended) return;
      readerFailedFirst = true;
      stopCommand();
    });
    return { stream: out, done, cancel };
  }
}
