/**
 * The keeper of one `lifeboat files mount`, started detached by it:
 *
 *   node files-keeper.js <repo> <job> <point> <dir>
 *
 * Its standard input holds the keys of an encrypted repository, unlocked by
 * the command (which had the password), or nothing for a plain one.
 * Opens a browse of the point with its tree at <dir> and keeps it until
 * SIGTERM or SIGINT (`lifeboat files umount <dir>`), or until the tree is
 * unmounted by other means; then closes everything and exits. Its first line
 * on standard output is `ready <json>` or `failed <json>`, for the command
 * that started it; nothing is written after.
 */
import { text } from 'node:stream/consumers';
import { createLogger } from '../core/log.js';
import { isLifeboatError } from '../core/errors.js';
import { ephemeralSource, isMountPoint, openBrowse, type OpenedBrowse } from '../files/index.js';
import { adoptRepositoryKeys, repositoryKeysFromText } from '../repository/index.js';

const [repo, job, point, dir] = process.argv.slice(2);
if (repo === undefined || job === undefined || point === undefined || dir === undefined) {
  process.stderr.write('usage: files-keeper.js <repo> <job> <point> <dir>\n');
  process.exit(2);
}
// The starting command reads the first line and goes: later writes must not kill the keeper.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);
// Detached from the terminal that started it: a closed terminal is not a reason to stop.
process.on('SIGHUP', () => undefined);
const stop = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => stop.abort(sig));

let opened: OpenedBrowse | undefined;
try {
  // Started by hand from a terminal, it has no keys to read (and would wait for an end of input forever).
  const keys = process.stdin.isTTY === true ? '' : (await text(process.stdin)).trim();
  if (keys !== '') adoptRepositoryKeys(repo, repositoryKeysFromText(keys));
  opened = await openBrowse((workDir) => ephemeralSource(repo, job, point, workDir, createLogger()), { mountAt: dir });
  process.stdout.write(
    `ready ${JSON.stringify({ pid: process.pid, point: opened.pointId, dir, volumes: opened.browse.volumes, guestfishPid: opened.browse.guestfishPid, qemuPid: opened.browse.qemuPid })}\n`,
  );
  // Until asked to stop, or until the tree went away (fusermount -u by hand, or the appliance died).
  while (!stop.signal.aborted && opened.browse.ended === undefined && (await isMountPoint(dir))) {
    await new Promise((r) => setTimeout(r, 1000));
  }
  await opened.close();
  process.exitCode = 0;
} catch (err) {
  await opened?.close().catch(() => undefined);
  const e = isLifeboatError(err)
    ? { code: err.code, message: err.message }
    : { code: 'LFB_ERR_INTERNAL', message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  process.stdout.write(`failed ${JSON.stringify(e)}\n`);
  process.exitCode = 1;
}
