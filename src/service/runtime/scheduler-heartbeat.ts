import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The time the scheduler last decided, kept in the state folder: at the next
 * start, cron fires between it and now were missed while the server was down.
 * One file per set of repositories: servers of other repositories may share
 * the state folder.
 */
const heartbeatPath = (stateDir: string, repos: readonly string[]): string => join(stateDir, `scheduler-${repoSetKey(repos)}.json`);

/** A short key of a set of repositories as a server was given it (its heartbeat file's name, its scheduler lease's). */
export const repoSetKey = (repos: readonly string[]): string => createHash('sha256').update(repos.join('\n')).digest('hex').slice(0, 12);

/** The last time written, or undefined when there is none (a first start) or it cannot be read. */
export async function readHeartbeat(stateDir: string, repos: readonly string[]): Promise<number | undefined> {
  try {
    const t = JSON.parse(await readFile(heartbeatPath(stateDir, repos), 'utf8')) as { lastSeen?: unknown };
    return typeof t.lastSeen === 'string' && Number.isFinite(Date.parse(t.lastSeen)) ? Date.parse(t.lastSeen) : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the time (temporary file, then rename: a reader never sees half of it); the error is the caller's to report. */
export async function writeHeartbeat(stateDir: string, repos: readonly string[], at: number): Promise<void> {
  const path = heartbeatPath(stateDir, repos);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(`${path}.tmp`, JSON.stringify({ lastSeen: new Date(at).toISOString() }));
  await rename(`${path}.tmp`, path);
}
