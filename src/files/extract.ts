import { spawn } from 'node:child_process';
import { lstat, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LifeboatError } from '../core/errors.js';

/** LFB_ERR_TARGET_EXISTS when `to` exists: a copy never goes over anything. */
export async function refuseExisting(to: string): Promise<void> {
  const exists = await lstat(to).then(
    () => true,
    () => false,
  );
  if (exists) throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${to} exists; name a new path with --to`);
}

/**
 * Extracts an archive whose one top entry is `entry` (a name, or `.`) into
 * a new folder beside `to` (GNU tar: modes, owners as numbers when run as
 * root, ns times, symlinks, hard links, holes of sparse members), then
 * renames the entry into place: `to` appears whole or not at all. The
 * files are made with this process's rights. `what` names the source in
 * errors.
 */
export async function extractArchive(body: Readable, entry: string, to: string, what: string): Promise<void> {
  if (entry !== '.' && (entry.includes('/') || entry === '..' || entry === '')) {
    body.destroy();
    throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the archive's top entry is "${entry}"`);
  }
  let work: string;
  try {
    work = await mkdtemp(join(dirname(to), '.lifeboat-get-'));
  } catch (err) {
    body.destroy();
    throw new LifeboatError('LFB_ERR_TOOL_FAILED', `cannot make a folder beside ${to}: ${(err as Error).message}`);
  }
  try {
    // --ignore-zeros: tar reads its input to the end instead of exiting at the archive's end-of-file blocks, which would
    // close the pipe before the sender's padding is written (a cut copy, then, only when the sender cut it).
    const child = spawn('tar', ['-x', '-f', '-', '-C', work, '--ignore-zeros', '--preserve-permissions', '--numeric-owner'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const exited = new Promise<number | null>((res, rej) => {
      child.on('error', rej);
      child.on('close', res);
    });
    const sent = pipeline(body, child.stdin).then(
      () => undefined,
      (err: unknown) => err,
    );
    const [problem, code] = await Promise.all([sent, exited]);
    // A failure of the source with its own code (the file went, the appliance died) comes first: tar then fails
    // only for its input's early end. Then tar's own failure: it ends its input early, which the copy sees as a cut.
    if (problem instanceof LifeboatError) throw problem;
    if (code !== 0) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `tar failed (exit ${code}): ${stderr.trim()}`);
    if (problem !== undefined) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the copy of ${what} was cut off: ${String(problem)}`);
    if (entry === '.') {
      await rename(work, to);
    } else {
      await rename(join(work, entry), to);
      await rm(work, { recursive: true, force: true });
    }
  } catch (err) {
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}
