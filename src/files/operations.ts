import { posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { LifeboatError } from '../core/errors.js';
import type { BrowseSession } from './browse.js';
import { extractArchive, refuseExisting } from './extract.js';
import type { GuestStat } from './guest-fs.js';
import { globMatcher } from './glob.js';
import { mountDirOf, pickFs, type GuestPath } from './paths.js';
import { rewriteArchive, singleMemberArchive, type MemberStat } from './tar-stream.js';

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

/** A guest path found in the appliance. */
export interface Located {
  readonly fsId: string;
  /** As the user names it, `<fs id>:/…`. */
  readonly guest: string;
  /** In the appliance, every symlink on the way resolved: `/<fs id>/…`. */
  readonly path: string;
  readonly st: GuestStat;
}

const notFound = (guest: string): LifeboatError =>
  new LifeboatError('LFB_ERR_FILE_NOT_FOUND', `${guest} does not exist at this point`, { details: { path: guest } });

/**
 * A guest path, which must exist (LFB_ERR_FILE_NOT_FOUND otherwise). The
 * folders on the way are resolved here, symlinks included, and a symlink
 * that leads out of the path's file system is refused
 * (LFB_ERR_INVALID_ARGUMENT): the appliance would resolve an absolute
 * target against its own root, not the guest's. The last part is not
 * followed (lstat).
 */
export async function locate(s: BrowseSession, p: GuestPath): Promise<Located> {
  const fsId = pickFs(p, s.fsIds());
  const guest = `${fsId}:${p.path}`;
  const root = mountDirOf(fsId);
  const parts = p.path.split('/').filter((x) => x !== '');
  const last = parts.pop();
  const dir = await s.guest.resolveDir(root, parts);
  if (dir === 'outside')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${guest} goes through a symlink that leaves its file system; name the path its target names`);
  if (dir === 'missing') throw notFound(guest);
  const path = last === undefined ? root : `${dir}/${last}`;
  const st = await s.guest.lstat(path);
  if (st === undefined) throw notFound(guest);
  return { fsId, guest, path, st };
}

function entryOf(name: string, guest: string, st: GuestStat, target: string | undefined): FileEntry {
  return {
    name,
    path: guest,
    type: st.type,
    size: st.size,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    mtime: new Date(st.mtimeSec * 1000 + Math.floor(st.mtimeNsec / 1e6)).toISOString(),
    ...(target !== undefined ? { target } : {}),
  };
}

/** A folder's entries (or the one entry of anything else), sorted by name: ls0, then lstatnslist and readlinklist in batches. */
export async function list(s: BrowseSession, p: GuestPath): Promise<FileEntry[]> {
  const at = await locate(s, p);
  if (at.st.type !== 'directory')
    return [entryOf(posix.basename(p.path), at.guest, at.st, at.st.type === 'symlink' ? await s.guest.readlink(at.path) : undefined)];
  const names = (await s.guest.readdir(at.path)).sort();
  const stats = await s.guest.lstatList(at.path, names);
  const links = names.filter((_, i) => stats[i]?.type === 'symlink');
  const targets = new Map((await s.guest.readlinkList(at.path, links)).map((t, i) => [links[i]!, t]));
  const prefix = `${at.fsId}:${p.path === '/' ? '' : p.path}/`;
  const out: FileEntry[] = [];
  names.forEach((n, i) => {
    // A name the appliance could not lstat (it went, or its inode is damaged) is left out, as ls does.
    const st = stats[i];
    if (st !== undefined) out.push(entryOf(n, prefix + n, st, targets.get(n)));
  });
  return out;
}

/** An archive being made; `done` settles once it was read whole, or failed. */
export interface ArchiveStream {
  readonly stream: Readable;
  readonly done: Promise<void>;
  /** The reader went away: the appliance's transfer stops. */
  cancel(): void;
}

/**
 * What an archive of `at` is made from, as the appliance streams it: a
 * folder's tar-out (`tar-out`), a file's bytes (`file`, with its lstat), or,
 * for anything else, the finished one-member archive (`archive`).
 * toArchive() makes the archive of it; a server hands it to the CLI as it
 * is, so that this work is the CLI's, not that of the server's main thread,
 * which serves the appliance's NBD reads.
 */
export interface ArchiveSource extends ArchiveStream {
  readonly form: 'tar-out' | 'file' | 'archive';
  readonly stat: GuestStat;
}

export async function archiveSource(s: BrowseSession, at: Located, top: string): Promise<ArchiveSource> {
  const { st } = at;
  if (st.type === 'directory') {
    const out = await s.guest.streamOut('tar-out', (fifo) => [at.path, fifo, 'numericowner:true', 'xattrs:true'], at.guest);
    return { ...followed(out.stream, out.cancel), form: 'tar-out', stat: st };
  }
  if (st.type === 'file') {
    const out = await s.guest.streamOut('download', (fifo) => [at.path, fifo], at.guest);
    return { ...followed(out.stream, out.cancel), form: 'file', stat: st };
  }
  if (st.type === 'socket') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${at.guest} is a socket: there is nothing to copy`);
  const target = st.type === 'symlink' ? await s.guest.readlink(at.path) : undefined;
  const one = rewriteArchive(singleMemberArchive(top, { ...st, ...(target !== undefined ? { target } : {}) }, undefined), '.');
  return { ...followed(one, () => undefined), form: 'archive', stat: st };
}

/** The archive (pax, owners as numbers, ns times, holes) whose one top entry is `top`, made from a source's stream by tar-stream.ts. */
export function toArchive(form: ArchiveSource['form'] | undefined, stream: Readable, top: string, stat: MemberStat | undefined): Readable {
  if (form === 'tar-out') return rewriteArchive(stream, top);
  if (form !== 'file') return stream;
  if (stat === undefined) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the copy of ${top} came without what it is (its stat)`);
  return rewriteArchive(singleMemberArchive(top, stat, stream), '.');
}

/** A tar of what `at` is, whose one top entry is `top` (archiveSource, then toArchive). */
export async function archive(s: BrowseSession, at: Located, top: string): Promise<ArchiveStream> {
  const src = await archiveSource(s, at, top);
  return followed(toArchive(src.form, src.stream, top, src.stat), src.cancel);
}

/**
 * `stream` with its end awaited and its source stopped once it is destroyed
 * before its end (a reader that failed or went away): the appliance would
 * otherwise wait, holding its guestfish server, for a reader that never
 * comes back.
 */
function followed(stream: Readable, cancelSource: () => void): ArchiveStream {
  let ended = false;
  stream.once('end', () => (ended = true));
  stream.once('close', () => {
    if (!ended) cancelSource();
  });
  const done = finished(stream);
  done.catch(() => undefined);
  return {
    stream,
    done,
    cancel: () => {
      cancelSource();
      stream.destroy();
    },
  };
}

/** A file's bytes as they are (download). */
export async function fileStream(s: BrowseSession, at: Located): Promise<ArchiveStream> {
  const out = await s.guest.streamOut('download', (fifo) => [at.path, fifo], at.guest);
  return followed(out.stream, out.cancel);
}

/** The archive's top entry for a path: its last part, or `.` for a file system's root. */
export function topEntry(p: GuestPath): string {
  return p.path === '/' ? '.' : posix.basename(p.path);
}

/**
 * Copies a file or folder out with modes, owners, ns times, symlinks, hard
 * links and holes: the archive of `archive`, extracted by GNU tar into a new
 * folder beside `to` and renamed into place.
 */
export async function get(s: BrowseSession, p: GuestPath, to: string): Promise<{ source: string; type: FileEntry['type'] }> {
  const at = await locate(s, p);
  await refuseExisting(to);
  // A folder's archive keeps tar-out's names (`./…`, extracted into the new folder itself): nothing to rename on the way.
  const top = at.st.type === 'directory' ? '.' : topEntry(p);
  const a = await archive(s, at, top);
  await extractArchive(a.stream, top, to, at.guest).catch((err: unknown) => {
    a.cancel();
    throw err;
  });
  return { source: at.guest, type: at.st.type };
}

/** A tar of a file or folder to `out`; its one top entry is the path's last part (`.` for a file system's root). */
export async function tar(s: BrowseSession, p: GuestPath, out: Writable): Promise<void> {
  const at = await locate(s, p);
  const a = await archive(s, at, topEntry(p));
  await pipeline(a.stream, out, { end: false }).catch((err: unknown) => {
    a.cancel();
    throw err;
  });
}

/** Paths under `p` (and `p` itself) whose name matches the shell glob `name`, as find -name does; sorted guest paths. */
export async function find(s: BrowseSession, p: GuestPath, name: string): Promise<string[]> {
  const at = await locate(s, p);
  const matches = globMatcher(name);
  const base = `${at.fsId}:${p.path === '/' ? '' : p.path}`;
  const out = p.path !== '/' && matches(posix.basename(p.path)) ? [at.guest] : [];
  if (at.st.type === 'directory') for (const rel of await s.guest.walk(at.path)) if (matches(posix.basename(rel))) out.push(base + rel);
  return out.sort();
}
