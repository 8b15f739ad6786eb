import { execFile, spawn } from 'node:child_process';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Stats } from 'node:fs';
import { LifeboatError } from '../core/errors.js';
import type { BrowseSession } from './browse.js';
import { pickFs, type GuestPath } from './paths.js';

export interface FileEntry {
  readonly name: string;
  /** The guest path, `<fs id>:/…`. */
  readonly path: string;
  readonly type: 'file' | 'directory' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket';
  readonly size: number;
  /** Permission bits with setuid, setgid and sticky, e.g. 0o640. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: string;
  readonly target?: string;
}

export function typeOf(st: Stats): FileEntry['type'] {
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isCharacterDevice()) return 'char-device';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'file';
}

/** A guest path on the host's FUSE tree, which must exist; LFB_ERR_FILE_NOT_FOUND otherwise. */
export async function locate(s: BrowseSession, p: GuestPath): Promise<{ fsId: string; host: string; guest: string; st: Stats }> {
  const fsId = pickFs(p, s.fsIds());
  const host = p.path === '/' ? s.root(fsId) : join(s.root(fsId), p.path);
  try {
    return { fsId, host, guest: `${fsId}:${p.path}`, st: await lstat(host) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new LifeboatError('LFB_ERR_FILE_NOT_FOUND', `${fsId}:${p.path} does not exist at this point`, { details: { path: `${fsId}:${p.path}` } });
    throw err;
  }
}

async function entry(host: string, name: string, guest: string): Promise<FileEntry> {
  const st = await lstat(host);
  const type = typeOf(st);
  return {
    name,
    path: guest,
    type,
    size: st.size,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtime: st.mtime.toISOString(),
    ...(type === 'symlink' ? { target: await readlink(host) } : {}),
  };
}

/**
 * A folder's entries (or the one entry of a file), sorted by name. One call
 * at a time on purpose: with no server the NBD export answering the
 * appliance lives in this process, and its backup-file reads need the same
 * thread pool these FUSE calls wait in.
 */
export async function list(s: BrowseSession, p: GuestPath): Promise<FileEntry[]> {
  const at = await locate(s, p);
  if (!at.st.isDirectory()) return [await entry(at.host, basename(at.guest), at.guest)];
  const names = (await readdir(at.host)).sort();
  const out: FileEntry[] = [];
  for (const n of names) out.push(await entry(join(at.host, n), n, `${at.fsId}:${p.path === '/' ? '' : p.path}/${n}`));
  return out;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `${cmd} failed: ${(stderr || err.message).trim().slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

/** Hours: a copy of a large folder over a TCG appliance is slow, but a hung one must still end. */
const COPY_TIMEOUT_MS = 6 * 3600_000;

/**
 * Copies a file or folder out with modes, owners, times and symlinks
 * (`cp -a`), writing zero runs as holes (`--sparse=always`), so a sparse file
 * stays sparse. cp runs in its own process, so the reads through FUSE never
 * wait on this process's thread pool.
 */
export async function get(s: BrowseSession, p: GuestPath, to: string): Promise<{ source: string; type: FileEntry['type'] }> {
  const at = await locate(s, p);
  const exists = await lstat(to).then(
    () => true,
    () => false,
  );
  if (exists) throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${to} exists; name a new path with --to`);
  await run('cp', ['-a', '--sparse=always', '--no-target-directory', '--', at.host, to], COPY_TIMEOUT_MS);
  return { source: at.guest, type: typeOf(at.st) };
}

/**
 * A tar of a file or folder to `out` (GNU tar in its own process: owners as
 * numbers, holes kept with --sparse, pax format for long names and
 * sub-second times). The archive's one top entry is the path's last part.
 */
export async function tar(s: BrowseSession, p: GuestPath, out: Writable): Promise<void> {
  const at = await locate(s, p);
  const [cwd, name] = p.path === '/' ? [at.host, '.'] : [dirname(at.host), basename(at.host)];
  const child = spawn('tar', ['-C', cwd, '-c', '-f', '-', '--sparse', '--numeric-owner', '--format=posix', '--', name], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  child.stdout.pipe(out, { end: false });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `tar failed (exit ${code}): ${stderr.trim()}`);
}

/** Paths under `p` whose name matches the shell glob `name` (find -name), as guest paths. */
export async function find(s: BrowseSession, p: GuestPath, name: string): Promise<string[]> {
  const at = await locate(s, p);
  const root = s.root(at.fsId);
  const out = await run('find', [at.host, '-name', name, '-print0'], COPY_TIMEOUT_MS);
  return out
    .split('\0')
    .filter((x) => x !== '')
    .map((h) => `${at.fsId}:${h === root ? '/' : h.slice(root.length)}`)
    .sort();
}
