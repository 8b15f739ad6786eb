/**
 * Where operators may make the server write. A restore or a migration
 * writes files as the server's user (often root): without a limit, an
 * operator could put a guest's bytes into /etc/cron.d. Admins may name any
 * path; operators only paths inside the server's target folders
 * (deps.targetFolders), checked on the real path of the nearest existing
 * folder, so a symbolic link inside a target folder does not lead out of it.
 */
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { LifeboatError } from '../../core/errors.js';
import type { ApiContext } from './context.js';
import type { Principal } from './deps.js';

/** The real path of `path`'s nearest existing ancestor (itself if it exists), with the rest appended. */
async function realLocation(path: string): Promise<string> {
  let at = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return resolve(await realpath(at), ...rest.reverse());
    } catch {
      const up = dirname(at);
      if (up === at) return resolve(path);
      rest.push(at.slice(up.length).replace(/^\//, ''));
      at = up;
    }
  }
}

function inside(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

export async function checkWriteTarget(ctx: ApiContext, who: Principal, path: string, what: string): Promise<void> {
  if (who.role === 'admin') return;
  const target = await realLocation(path);
  for (const folder of ctx.deps.targetFolders ?? []) if (inside(await realLocation(folder), target)) return;
  const folders = ctx.deps.targetFolders ?? [];
  throw new LifeboatError(
    'LFB_ERR_FORBIDDEN',
    folders.length === 0
      ? `${what}: only an admin may name where the server writes (this server has no target folders for operators)`
      : `${what}: ${path} is outside the folders operators may write to (${folders.join(', ')}); an admin may name any path`,
    { details: { path } },
  );
}

/** A booted VM's network: operators get none or isolated; any other -nic spec (a tap with a script runs it) is for admins. */
export function checkBootNetwork(who: Principal, network: string | undefined): void {
  if (network === undefined || network === 'none' || network === 'isolated' || who.role === 'admin') return;
  throw new LifeboatError('LFB_ERR_FORBIDDEN', `boot network "${network}": operators may choose none or isolated; other -nic settings need an admin`);
}
