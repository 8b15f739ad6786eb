/**
 * File-level recovery over HTTP: a point's volumes and folders, downloads
 * of files (as they are) and folders (GNU tar), find, and the server's open
 * sessions (src/service/file-sessions.ts). The first request on a point
 * waits for its appliance (12 to 30 s under TCG); later ones reuse it.
 * Listing and downloading are reads (viewer); closing a session is operator.
 */
import { spawn } from 'node:child_process';
import { realpath } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { LifeboatError } from '../../core/errors.js';
import { list, locate, find, parseGuestPath, type OpenedBrowse, type Volume } from '../../files/index.js';
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

/**
 * A guest path on the host's tree, refused when a symlink on the way leads
 * out of its file system's folder: the tree is the guest's, but the host
 * resolves a symlink inside it against the host's root.
 */
export async function locateInside(b: OpenedBrowse, pathText: string) {
  const at = await locate(b.browse, parseGuestPath(pathText));
  const root = await realpath(b.browse.root(at.fsId));
  const real = await realpath(at.st.isSymbolicLink() ? dirname(at.host) : at.host);
  if (real !== root && !real.startsWith(`${root}/`))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${at.guest} goes through a symlink that leaves its file system; name the path its target names`);
  return at;
}

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
        const entries = await files.fuse(async () => {
          const at = await locateInside(b, path);
          return list(b.browse, parseGuestPath(at.guest));
        });
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
        const at = await files.fuse(() => locateInside(b, request.query.path));
        const isDir = at.st.isDirectory();
        if (!isDir && !at.st.isFile())
          throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${at.guest} is not a file or folder (a symlink: download the path it names)`);
        // Child processes read the FUSE tree: a large download never waits in (or fills) this process's thread pool.
        const [cmd, args] = isDir
          ? ['tar', ['-C', dirname(at.host), '-c', '-f', '-', '--sparse', '--numeric-owner', '--format=posix', '--', basename(at.host)]]
          : ['cat', ['--', at.host]];
        const child = spawn(cmd, args as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
        child.on('close', (code) => {
          l.release();
          // Too late for a status: a cut stream tells the client (no chunked terminator, or fewer bytes than Content-Length).
          if (code !== 0) {
            ctx.deps.logger.warn('files: download failed', { path: at.guest, command: cmd, code, stderr: stderr.trim() });
            child.stdout.destroy(new Error(`${cmd} failed`));
          }
        });
        // The client went away: stop reading.
        reply.raw.on('close', () => {
          if (child.exitCode === null) child.kill('SIGTERM');
        });
        handedOver = true;
        const name = at.guest.endsWith(':/') ? at.fsId.replace('/', '-') : basename(at.host);
        void reply.header('content-disposition', contentDisposition(isDir ? `${name}.tar` : name));
        if (!isDir) void reply.header('content-length', String(at.st.size));
        return reply.type(isDir ? 'application/x-tar' : 'application/octet-stream').send(child.stdout);
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
        for (const r of roots) {
          // Held in the FUSE queue throughout: find's own first look is an lstat in this process.
          const found = await files.fuse(async () => {
            await locateInside(b, r);
            return find(b.browse, parseGuestPath(r), request.query.name);
          });
          paths.push(...found);
        }
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
