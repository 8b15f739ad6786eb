import { repositoryRoot } from '../repository/location.js';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
// The control modules alone: app/index.js would load the whole server (NFS, NBD, instant recovery) into every command.
import { callControl, controlFile } from '../app/control-api.js';
import { copyThroughControl, type FilesRequest } from '../app/control-files.js';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
// The extraction alone: files/index.js would load the appliance's code (and the repository's) into every hand-off.
import { extractArchive, refuseExisting } from '../files/extract.js';
import { toArchive } from '../files/operations.js';
import type { FileEntry, Volume } from '../files/index.js';

/**
 * `lifeboat files ls|get|find` while a server runs for the repository: the
 * server's file session of the point answers (its appliance boots once, then
 * every later command reuses it until it has been idle for the server's
 * --files-idle-timeout). Each function is undefined when no server runs for
 * the repository: the CLI then reads the point itself.
 */
type Progress = (line: string) => void;

async function orLocal<T>(repo: string, progress: Progress, call: (root: string) => Promise<T>): Promise<T | undefined> {
  const root = repositoryRoot(repo);
  if (!existsSync(controlFile(root))) return undefined;
  progress("a server runs for the repository: asking its file session of the point (the point's first request waits for its appliance)");
  try {
    return await call(root);
  } catch (err) {
    if (isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING')) return undefined;
    throw err;
  }
}

export function lsThroughServer(
  repo: string,
  progress: Progress,
  req: FilesRequest,
): Promise<{ pointId: string; volumes?: Volume[]; entries?: FileEntry[] } | undefined> {
  return orLocal(repo, progress, (root) => callControl(root, 'POST', '/files/ls', req));
}

export function findThroughServer(
  repo: string,
  progress: Progress,
  req: FilesRequest & { name: string },
): Promise<{ pointId: string; found: string[] } | undefined> {
  return orLocal(repo, progress, (root) => callControl(root, 'POST', '/files/find', req));
}

/** The niceness this process takes once a server streams it a copy (see yieldToServer). */
const COPY_NICENESS = 10;

/**
 * Lowers this process's priority (and so that of the tar it starts) below
 * the server's and its appliance's, which set a copy's pace: every cold read
 * of the appliance waits for the server's NBD reply, and on a machine with
 * few cores the archive's rewrite and tar's file creation took the CPU from
 * both. A 10,000-file folder through serve, the appliance's page cache
 * emptied each time, took 9.1 to 10.3 s instead of 11.2 to 12.5 s
 * (2026-12-06, 2 cores). Linux's niceness is per thread: this is the main
 * thread's, which tar inherits. It orders threads within one scheduling
 * group: against a server in another (systemd's system.slice, the CLI in a
 * user's session) it changes little, and nothing against a server that
 * itself runs at niceness 10 or more.
 */
function yieldToServer(): void {
  try {
    if (getPriority() < COPY_NICENESS) setPriority(COPY_NICENESS);
  } catch {
    // Not allowed (a container's limits): the copy runs as it is.
  }
}

/** `--tar`: the archive of what the server streams (src/files' toArchive) to `out` (standard output). */
export async function tarThroughServer(
  repo: string,
  progress: Progress,
  req: FilesRequest & { path: string },
  out: Writable,
): Promise<{ pointId: string } | undefined> {
  const copy = await orLocal(repo, progress, (root) => copyThroughControl(root, req));
  if (copy === undefined) return undefined;
  yieldToServer();
  await pipeline(toArchive(copy.form, copy.body, copy.entry, copy.stat), out, { end: false }).catch((err: unknown) => {
    throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the server's tar of ${copy.source} was cut off: ${String(err)}`);
  });
  return copy;
}

/**
 * `--to`: the server streams what the archive of the path is made from, and
 * this process makes the archive (toArchive) and extracts it
 * (src/files' extractArchive: GNU tar, modes, numeric owners when root, ns
 * times, symlinks, hard links, holes) into a new folder beside `to`, then
 * renames it into place. The server never writes where the CLI's caller
 * names: the files are made with this process's rights, under its own
 * working folder.
 */
export async function getThroughServer(
  repo: string,
  progress: Progress,
  req: FilesRequest & { path: string },
  to: string,
): Promise<{ pointId: string; source: string; type: string } | undefined> {
  const copy = await orLocal(repo, progress, (root) => copyThroughControl(root, req));
  if (copy === undefined) return undefined;
  yieldToServer();
  try {
    await refuseExisting(to);
  } catch (err) {
    copy.body.destroy();
    throw err;
  }
  // A folder's tar-out keeps its names (`./…`, extracted into the new folder itself): nothing to rename on the way.
  const entry = copy.form === 'tar-out' ? '.' : copy.entry;
  await extractArchive(toArchive(copy.form, copy.body, entry, copy.stat), entry, to, `${copy.source} from the server`);
  return copy;
}
