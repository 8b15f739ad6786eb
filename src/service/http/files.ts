/**
 * File-level recovery over HTTP: a point's volumes and folders, downloads
 * of files (as they are, the appliance's download) and folders (a tar: the
 * appliance's tar-out written again with holes), find, and the server's
 * open sessions (src/service/file-sessions.ts). The first request on a
 * point waits for its appliance (12 to 30 s under TCG); later ones reuse
 * it. A symlink on a path's way that leads out of its file system is
 * refused (422, src/files' locate). Listing and downloading are reads
 * (viewer); closing a session is operator.
 */
import { posix } from 'node:path';
import { LifeboatError } from '../../core/errors.js';
import { archive, fileStream, find, list, locate, parseGuestPath, type Volume } from '../../files/index.js';
import { FileSessions } from '../file-sessions.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES } from './schemas.js';
import { CloseReply, DOWNLOAD_RESPONSE, DownloadQuery, FileSessionList, FilesParams, FilesQuery, FilesReply, FindQuery, FindReply } from './files-schemas.js';

const volumeView = ({ id, kind, type, size, label, mounted, problem }: Volume) => ({
  id,
  kind,
  size,
  mounted,
  ...(type !== undefined ? { type } : {}),
  ...(label !== undefined ? { label } : {}),
  ...(problem !== undefined ? { problem } : {}),
});

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export function fileRoutes(app: ApiServer, ctx: ApiContext): void {
  const { deps } = ctx;
  // The API owns the sessions (the server's, shared with its control API, or its own): closing it (serve stopping, in every outcome) ends them.
  const files = deps.fileSessions ?? new FileSessions({ idleMs: deps.filesIdleTimeoutMs, max: deps.maxFileSessions, clock: deps.clock, logger: deps.logger });
  app.addHook('onClose', () => files.closeAll());
  const base = `${API_PREFIX}/repositories/:repo/jobs/:job/points/:point/files`;
  const lease = (p: { repo: string; job: string; point: string }) => files.acquire(p.repo, ctx.repoRoot(p.repo), p.job, p.point);

  app.get(
    base,
    {
      schema: {
        summary: "The point's volumes (disks, partitions, LVM volumes, file systems); with ?path, that folder's entries",
        description: 'The first request on a point opens its file session: it waits while the appliance boots (12 to 30 s without KVM).',
        tags: ['files'],
        params: FilesParams,
        querystring: FilesQuery,
        response: { 200: FilesReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const l = await lease(request.params);
      try {
        const b = l.browse;
        const out = { pointId: b.pointId, volumes: b.browse.volumes.map(volumeView) };
        const path = request.query.path;
        if (path === undefined) return out;
        const entries = await list(b.browse, parseGuestPath(path));
        return { ...out, path, entries: entries.map((e) => ({ ...e })) };
      } finally {
        l.release();
      }
    },
  );

  app.get(
    `${base}/download`,
    {
      schema: {
        summary: 'A file as it is, or a folder as a GNU tar archive (pax: owners as numbers, holes kept), streamed',
        tags: ['files'],
        params: FilesParams,
        querystring: DownloadQuery,
        response: { ...DOWNLOAD_RESPONSE, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const l = await lease(request.params);
      let handedOver = false;
      try {
        const b = l.browse;
        const p = parseGuestPath(request.query.path);
        const at = await locate(b.browse, p);
        const isDir = at.st.type === 'directory';
        if (!isDir && at.st.type !== 'file')
          throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${at.guest} is not a file or folder (a symlink: download the path it names)`);
        // A file system's root is named after its id's last part (disk1, or root of vg0/root).
        const name = p.path === '/' ? at.fsId.split('/').pop()! : posix.basename(p.path);
        const out = isDir ? await archive(b.browse, at, name) : await fileStream(b.browse, at);
        out.done.then(
          () => l.release(),
          (err: unknown) => {
            l.release();
            // Too late for a status: a cut stream tells the client (no chunked terminator, or fewer bytes than Content-Length).
            ctx.deps.logger.warn('files: download failed', { path: at.guest, problem: String(err) });
          },
        );
        // The client went away: the appliance's transfer stops.
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) out.cancel();
        });
        handedOver = true;
        void reply.header('content-disposition', contentDisposition(isDir ? `${name}.tar` : name));
        if (!isDir) void reply.header('content-length', String(at.st.size));
        return reply.type(isDir ? 'application/x-tar' : 'application/octet-stream').send(out.stream);
      } finally {
        if (!handedOver) l.release();
      }
    },
  );

  app.get(
    `${base}/find`,
    {
      schema: {
        summary: 'Paths under ?path (default: every file system) whose name matches the glob ?name',
        tags: ['files'],
        params: FilesParams,
        querystring: FindQuery,
        response: { 200: FindReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const l = await lease(request.params);
      try {
        const b = l.browse;
        const roots = request.query.path !== undefined ? [request.query.path] : b.browse.fsIds().map((id) => `${id}:/`);
        const paths: string[] = [];
        for (const r of roots) paths.push(...(await find(b.browse, parseGuestPath(r), request.query.name)));
        return { pointId: b.pointId, paths };
      } finally {
        l.release();
      }
    },
  );

  app.delete(
    base,
    {
      schema: {
        summary: "Close the point's file session now (its appliance ends, the point's hold goes)",
        tags: ['files'],
        params: FilesParams,
        response: { 200: CloseReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ closed: await files.close(ctx.repoRoot(request.params.repo), request.params.job, request.params.point) }),
  );

  app.get(
    `${API_PREFIX}/files/sessions`,
    { schema: { summary: 'The open file sessions of this server', tags: ['files'], response: { 200: FileSessionList, ...ERROR_RESPONSES } } },
    async () => ({ sessions: files.list(), idleTimeoutSeconds: files.idleMs / 1000, max: files.max }),
  );
}
