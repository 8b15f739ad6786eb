import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { LifeboatError } from '../core/errors.js';

/**
 * Where sessions and migrations may write. Paths come from the control API
 * (any local client with the token), so each is checked: absolute, not in
 * the repository (but its cache/ folder, where sessions live by default), and
 * a session folder is new or empty, so that everything in it is the
 * session's own and `instant stop` can remove it.
 */

/** `path` with symbolic links resolved, for the part of it that exists. */
export async function canonicalPath(path: string): Promise<string> {
  const missing: string[] = [];
  let at = resolve(path);
  for (;;) {
    try {
      return join(await realpath(at), ...missing.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(at) === at) throw err;
      missing.push(basename(at));
      at = dirname(at);
    }
  }
}

/** True if `path` is `folder` or inside it (both canonical). */
export function isWithin(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function absolute(path: string, what: string): string {
  if (!isAbsolute(path)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${what} must be an absolute path, not "${path}"`);
  return resolve(path);
}

/**
 * The folder of a new session named `name`: <host root>/cache/instant/<name>
 * (`hostRoot`: the repository's folder, or this host's folder of a repository
 * on object storage), or <cacheDir>/<name>. Refused when it is in the
 * repository's own folders, would contain them, or already holds anything.
 */
export async function newSessionDir(hostRoot: string, name: string, cacheDir: string | undefined): Promise<string> {
  const dir = cacheDir === undefined ? join(hostRoot, 'cache', 'instant', name) : join(absolute(cacheDir, '--cache-dir'), name);
  const real = await canonicalPath(dir);
  const root = await canonicalPath(hostRoot);
  if (isWithin(root, real) || (isWithin(real, root) && !isWithin(real, await canonicalPath(join(hostRoot, 'cache')))))
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `--cache-dir: the session folder ${dir} would be in or around the repository ${hostRoot} (only its cache/ folder may hold sessions)`,
    );
  for (const own of ['blocks', 'boot']) {
    const folder = await canonicalPath(join(hostRoot, 'cache', own));
    if (isWithin(real, folder) || isWithin(folder, real))
      throw new LifeboatError(
        'LFB_ERR_INVALID_ARGUMENT',
        `--cache-dir: the session folder ${dir} would be in or around the repository's cache/${own} folder, which holds ${own === 'blocks' ? 'decoded blocks' : 'boot lists'} for every session`,
      );
  }
  const st = await stat(real).catch(() => undefined);
  if (st && (!st.isDirectory() || (await readdir(real)).length > 0))
    throw new LifeboatError(
      'LFB_ERR_TARGET_EXISTS',
      `${dir} already exists and is not an empty folder; a session's folder is the session's alone (stop removes it): choose another --name or --cache-dir`,
    );
  return dir;
}

/** A migration's target folder: absolute, outside the repository's host root (its folder) and the session's folder. */
export async function migrationTarget(hostRoot: string, sessionDir: string, to: string): Promise<string> {
  const target = absolute(to, '--to');
  const real = await canonicalPath(target);
  if (isWithin(real, await canonicalPath(hostRoot)))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--to ${target} is inside the repository ${hostRoot}: migrate to production storage elsewhere`);
  if (isWithin(real, await canonicalPath(sessionDir)))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--to ${target} is inside the session's own folder ${sessionDir}, which stop removes`);
  return target;
}
