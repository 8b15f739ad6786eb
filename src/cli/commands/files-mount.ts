import { repositoryRoot } from '../../repository/location.js';
import { spawn } from 'node:child_process';
import { mkdir, readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { ERROR_CODES, LifeboatError, type ErrorCode } from '../../core/errors.js';
import { processAlive } from '../../core/process-alive.js';
import { cleanUp, findMount, isMountPoint, sweepStale, type Volume } from '../../files/index.js';
import { Repository, repositoryKeysText } from '../../repository/index.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';
import { POINT_OPTION, stderrProgress, volumeLine } from './files-browse.js';

const KEEPER = fileURLToPath(new URL('../files-keeper.js', import.meta.url));
/** The appliance's boot under TCG takes ~30 s on a busy machine; inspecting and mounting a few more. */
const START_TIMEOUT_MS = 300_000;
const STOP_TIMEOUT_MS = 60_000;

export const filesMount: Command = {
  name: 'files mount',
  usage: 'files mount <job> <dir> --repo <dir> --point <id|latest> [--json]   (each file system read-only at <dir>/<fs id>, until files umount <dir>)',
  summary: "keep a point's file systems mounted read-only at a folder (for other tools)",
  positionals: ['job', 'dir'],
  options: { repo: REPO_OPTION, point: POINT_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const dir = resolve(ctx.args[1]!);
    const point = requireString(ctx, 'point');
    const repo = repositoryRoot(requireString(ctx, 'repo'));
    // Unlocked here, where the password was given (--password-file, LIFEBOAT_PASSWORD_FILE or the terminal):
    // a wrong or missing one fails before anything is made, and the keeper gets the keys on its standard input.
    const { keys } = await Repository.open(repo);
    await sweepStale();
    if (await findMount(dir)) throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `a point is already mounted at ${dir}; lifeboat files umount ${dir} first`);
    await mkdir(dir, { recursive: true });
    if ((await isMountPoint(dir)) || (await readdir(dir)).length > 0)
      throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${dir} must be an empty folder that is not a mount point`);
    stderrProgress('starting the keeper; the appliance boots (about 15 to 30 s without KVM)');
    const child = spawn(process.execPath, [KEEPER, repo, ctx.args[0]!, point, dir], {
      detached: true,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(keys === undefined ? '' : `${repositoryKeysText(keys)}\n`);
    const first = await new Promise<string>((resolveLine, reject) => {
      const rl = createInterface({ input: child.stdout! });
      const t = setTimeout(
        () => reject(new LifeboatError('LFB_ERR_GUESTFS', `the mount keeper (pid ${child.pid}) did not get ready within ${START_TIMEOUT_MS / 1000} s`)),
        START_TIMEOUT_MS,
      );
      rl.once('line', (l) => {
        clearTimeout(t);
        resolveLine(l);
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new LifeboatError('LFB_ERR_GUESTFS', `the mount keeper exited (${code}) before it was ready`));
      });
    }).catch(async (err: unknown) => {
      if (child.pid !== undefined && processAlive(child.pid)) process.kill(child.pid, 'SIGTERM');
      throw err;
    });
    child.stdout!.destroy();
    child.unref();
    const space = first.indexOf(' ');
    const word = first.slice(0, space);
    const body = JSON.parse(first.slice(space + 1)) as { code?: string; message?: string; point?: string; volumes?: Volume[]; pid?: number };
    if (word !== 'ready') {
      const code = (body.code !== undefined && body.code in ERROR_CODES ? body.code : 'LFB_ERR_INTERNAL') as ErrorCode;
      throw new LifeboatError(code, body.message ?? 'the mount keeper failed');
    }
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ dir, ...body }));
    ctx.out(`point ${body.point} mounted read-only at ${dir} (keeper pid ${body.pid}); lifeboat files umount ${dir} ends it`);
    for (const v of body.volumes ?? []) if (v.mounted) ctx.out(`  ${dir}/${v.id}  ${volumeLine(v)}`);
  },
};

export const filesUmount: Command = {
  name: 'files umount',
  usage: 'files umount <dir> [--json]',
  summary: 'end a files mount: unmount the folder, stop its appliance',
  positionals: ['dir'],
  options: { json: JSON_OPTION },
  async run(ctx) {
    const dir = resolve(ctx.args[0]!);
    const m = await findMount(dir);
    if (!m) {
      await sweepStale();
      throw new LifeboatError('LFB_ERR_MOUNT_NOT_FOUND', `no lifeboat files mount is recorded at ${dir}`);
    }
    const pid = m.record.ownerPid;
    if (processAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      const end = performance.now() + STOP_TIMEOUT_MS;
      while (processAlive(pid) && performance.now() < end) await new Promise((r) => setTimeout(r, 200));
    }
    // A keeper that was killed (-9) or did not stop in time: its processes and tree are ended here.
    await cleanUp(m.workDir, m.record);
    if (await isMountPoint(dir)) throw new LifeboatError('LFB_ERR_GUESTFS', `${dir} is still mounted; try fusermount -u -z ${dir}`);
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ dir, unmounted: true }));
    ctx.out(`unmounted ${dir}`);
  },
};
