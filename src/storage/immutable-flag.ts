import { processAlive } from '../core/process-alive.js';
import { execFile } from 'node:child_process';
import { open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crashPoint } from '../core/crash-point.js';
import { LifeboatError } from '../core/errors.js';

/**
 * The file system's immutable attribute (FS_IOC_SETFLAGS, FS_IMMUTABLE_FL:
 * ext4, xfs, btrfs, tmpfs since Linux 6.0), which only a process with
 * CAP_LINUX_IMMUTABLE may set or clear. While it is set, nobody (root
 * included) may write, truncate, rename or unlink the file. Node has no
 * ioctl, so e2fsprogs' chattr and lsattr do it: one process per call, for any
 * number of files (a run seals a few), and no native code to rebuild.
 */

const TOOL_TIMEOUT_MS = 30_000;

function run(tool: 'chattr' | 'lsattr', args: readonly string[]): Promise<{ ok: boolean; stdout: string; stderr: string; missing: boolean }> {
  return new Promise((resolvePromise) => {
    execFile(tool, args, { timeout: TOOL_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      resolvePromise({ ok: err === null, stdout, stderr: stderr.trim() || (err?.message ?? ''), missing: code === 'ENOENT' });
    });
  });
}

function toolMissing(tool: string): LifeboatError {
  return new LifeboatError('LFB_ERR_TOOL_MISSING', `${tool} is not installed; an immutable repository needs it (apt-get install e2fsprogs)`, {
    details: { tool },
  });
}

/** Sets (`on`) or clears the immutable attribute of each file. Fails with LFB_ERR_IMMUTABLE_UNSUPPORTED when the file system or the process cannot. */
export async function setImmutable(paths: readonly string[], on: boolean): Promise<void> {
  if (paths.length === 0) return;
  const r = await run('chattr', [on ? '+i' : '-i', '--', ...paths]);
  if (r.missing) throw toolMissing('chattr');
  if (!r.ok) {
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE_UNSUPPORTED',
      `cannot ${on ? 'set' : 'clear'} the immutable attribute of ${paths.length === 1 ? paths[0]! : `${paths.length} files in ${paths[0]!}'s folder`}: ${r.stderr} (an immutable repository needs a local ext4 or xfs file system and root, with CAP_LINUX_IMMUTABLE)`,
      { details: { files: [...paths], tool: 'chattr', output: r.stderr } },
    );
  }
}

/** Which of the files have the immutable attribute set now. A file that is gone is left out. */
export async function immutableFiles(paths: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  if (paths.length === 0) return out;
  // lsattr reports every file it can read, and fails (after printing the others) on a missing one.
  const r = await run('lsattr', ['-d', '--', ...paths]);
  if (r.missing) throw toolMissing('lsattr');
  for (const line of r.stdout.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    if (line.slice(0, sp).includes('i')) out.add(line.slice(sp + 1));
  }
  if (!r.ok && out.size === 0 && !/No such file/.test(r.stderr)) {
    throw new LifeboatError('LFB_ERR_IMMUTABLE_UNSUPPORTED', `cannot read the attributes of ${paths[0]!}: ${r.stderr}`, {
      details: { files: [...paths], tool: 'lsattr', output: r.stderr },
    });
  }
  return out;
}

const PROBE_PREFIX = 'immutable-probe-';

/**
 * Proves that files in `dir` can be made immutable, on a probe file: the
 * attribute is set, read back, and a write to the file must fail; then the
 * probe is unlocked and removed. A probe a killed process left is removed
 * first. Throws LFB_ERR_IMMUTABLE_UNSUPPORTED (with chattr's words) otherwise.
 */
export async function probeImmutable(dir: string): Promise<void> {
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith(PROBE_PREFIX))) {
    const pid = Number(name.slice(PROBE_PREFIX.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) continue;
    await setImmutable([join(dir, name)], false).catch(() => undefined);
    await unlink(join(dir, name)).catch(() => undefined);
  }
  const probe = join(dir, `${PROBE_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  try {
    const f = await open(probe, 'wx');
    await f.close();
  } catch (err) {
    throw new LifeboatError('LFB_ERR_IMMUTABLE_UNSUPPORTED', `cannot create a probe file in ${dir}: ${(err as Error).message}`, { details: { dir } });
  }
  try {
    await setImmutable([probe], true);
    if (!(await immutableFiles([probe])).has(probe)) {
      throw new LifeboatError('LFB_ERR_IMMUTABLE_UNSUPPORTED', `the file system of ${dir} accepts the immutable attribute but does not keep it`, {
        details: { dir },
      });
    }
    const writable = await open(probe, 'r+').then(
      async (f) => {
        await f.close();
        return true;
      },
      () => false,
    );
    if (writable) {
      throw new LifeboatError(
        'LFB_ERR_IMMUTABLE_UNSUPPORTED',
        `the file system of ${dir} keeps the immutable attribute but does not enforce it (a probe file stayed writable)`,
        {
          details: { dir },
        },
      );
    }
  } finally {
    await setImmutable([probe], false).catch(() => undefined);
    await unlink(probe).catch(() => undefined);
  }
}

/** Clears the attribute of one file that is about to be deleted; a crash point follows, so the crash tests can stop between unlocking and deleting. */
export async function unlockForDelete(path: string): Promise<void> {
  await setImmutable([path], false);
  crashPoint();
}
