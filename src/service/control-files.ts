/**
 * The control API's file-level recovery (src/app/control-files.ts) over the
 * server's file sessions: `lifeboat files ls|get|find` while `serve` runs
 * use the point's session the HTTP API uses too, so its appliance boots
 * once for all of them. A copy is what the archive of the path is made
 * from (src/files' archiveSource: the appliance's tar-out of a folder, a
 * file's download), passed on as it comes: the CLI writes it again (names,
 * holes), not this process's main thread, which serves the appliance's NBD
 * reads. The archive's top entry is the path's last part, or `.` for a file
 * system's root.
 */
import type { ControlFiles, FilesCopy } from '../app/index.js';
import { LifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { archiveSource, find, list, locate, parseGuestPath, topEntry } from '../files/index.js';
import type { FileSessions } from './file-sessions.js';
import { repoNames } from './http/context.js';

export function controlFiles(files: FileSessions, root: string, logger: Logger): ControlFiles {
  const repoName = [...repoNames([root]).keys()][0]!;
  const lease = (job: string, point: string) => files.acquire(repoName, root, job, point);
  return {
    async ls(req) {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        if (req.path === undefined) return { pointId: b.pointId, volumes: b.browse.volumes };
        return { pointId: b.pointId, entries: await list(b.browse, parseGuestPath(req.path)) };
      } finally {
        l.release();
      }
    },

    async find(req) {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        const starts = req.path !== undefined ? [parseGuestPath(req.path)] : b.browse.fsIds().map((fsId) => ({ fsId, path: '/' }));
        const found: string[] = [];
        for (const s of starts) found.push(...(await find(b.browse, s, req.name)));
        return { pointId: b.pointId, found };
      } finally {
        l.release();
      }
    },

    async copy(req): Promise<FilesCopy> {
      const l = await lease(req.job, req.point);
      try {
        const b = l.browse;
        const p = parseGuestPath(req.path);
        const at = await locate(b.browse, p);
        const entry = topEntry(p);
        const a = await archiveSource(b.browse, at, entry);
        const done = a.done
          .catch((err: unknown) => {
            logger.warn('files: a copy for the CLI failed', { path: at.guest, problem: String(err) });
            throw new LifeboatError('LFB_ERR_TOOL_FAILED', `the archive of ${at.guest} failed: ${String(err)}`);
          })
          .finally(() => l.release());
        done.catch(() => undefined);
        const { type, mode, uid, gid, size, mtimeSec, mtimeNsec, rdev } = a.stat;
        const stat = { type, mode, uid, gid, size, mtimeSec, mtimeNsec, rdev };
        return { pointId: b.pointId, source: at.guest, type, entry, form: a.form, stat, stream: a.stream, done, cancel: () => a.cancel() };
      } catch (err) {
        l.release();
        throw err;
      }
    },
  };
}
