/**
 * The control API's file-level recovery (src/app/control-files.ts) over the
 * server's file sessions: `lifeboat files ls|get|find` while `serve` runs
 * use the point's session the HTTP API uses too, so its appliance boots
 * once for all of them. FUSE calls go through the sessions' one queue and
 * copies run in a child tar, as in the HTTP routes (src/service/http/files.ts).
 */
import { spawn } from 'node:child_process';
import { basename, dirname } from 'node:path';
import type { ControlFiles, FilesCopy } from '../app/index.js';
import { LifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { find, list, parseGuestPath, typeOf } from '../files/index.js';
import type { FileSessions } from './file-sessions.js';
import { repoNames } from './http/context.js';
import { locateInside } from './http/files.js';

export function controlFiles(files: FileSessions, root: string, logger: Logger): ControlFiles {
  const repoName = [...repoNames([root]).keys()][0]!;
  const lease = (job: string, point: string) => files.acquire(repoName, root, job, point);
  return {
    async ls(req) {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        const path = req.path;
        if (path === undefined) return { pointId: b.pointId, volumes: b.browse.volumes };
        const entries = await files.fuse(async () => list(b.browse, parseGuestPath((await locateInside(b, path)).guest)));
        return { pointId: b.pointId, entries };
      } finally {
        l.release();
      }
    },

    async find(req) {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        const starts = req.path !== undefined ? [req.path] : b.browse.fsIds().map((id) => `${id}:/`);
        const found: string[] = [];
        for (const s of starts) found.push(...(await files.fuse(async () => find(b.browse, parseGuestPath((await locateInside(b, s)).guest), req.name))));
        return { pointId: b.pointId, found };
      } finally {
        l.release();
      }
    },

    async copy(req): Promise<FilesCopy> {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        const at = await files.fuse(() => locateInside(b, req.path));
        const rootOfFs = parseGuestPath(at.guest).path === '/';
        // The same archive as `files get --tar` without a server (src/files' tar), from a child process: never this process's thread pool.
        const [cwd, entry] = rootOfFs ? [at.host, '.'] : [dirname(at.host), basename(at.host)];
        const child = spawn('tar', ['-C', cwd, '-c', '-f', '-', '--sparse', '--numeric-owner', '--format=posix', '--', entry], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
        const done = new Promise<void>((resolve, reject) => {
          child.on('error', reject);
          child.on('close', (code) => {
            if (code === 0) return resolve();
            logger.warn('files: a copy for the CLI failed', { path: at.guest, code, stderr: stderr.trim() });
            reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `tar failed (exit ${code}): ${stderr.trim()}`));
          });
        }).finally(() => l.release());
        done.catch(() => undefined);
        return {
          pointId: b.pointId,
          source: at.guest,
          type: typeOf(at.st),
          entry,
          stream: child.stdout,
          done,
          cancel: () => {
            if (child.exitCode === null) child.kill('SIGTERM');
          },
        };
      } catch (err) {
        l.release();
        throw err;
      }
    },
  };
}
