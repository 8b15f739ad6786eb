/**
 * Instant-recovery sessions of the repositories this server serves: start,
 * list, stop, add a disk, migrate to production storage, and a migration's
 * progress as Server-Sent Events.
 */
import { Type, type Static } from 'typebox';
import { LifeboatError } from '../../core/errors.js';
import type { InstantRecovery, SessionInfo } from '../../recovery/index.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import type { Session } from './schemas.js';
import { AddDiskBody, ERROR_RESPONSES, EVENT_STREAM, MigrateBody, SessionList, SessionParams, SessionQuery, SessionStartBody } from './schemas.js';
import { pollInto, type EventStreams } from './sse.js';
import { checkBootNetwork, checkWriteTarget } from './targets.js';

type SessionView = Static<typeof Session>;

function view(repo: string, s: SessionInfo): SessionView {
  return {
    repo,
    name: s.name,
    job: s.job,
    pointId: s.pointId,
    createdAt: s.createdAt,
    state: s.state,
    ...(s.problem !== undefined ? { problem: s.problem } : {}),
    vmx: s.vmx,
    disks: s.disks.map((d) => ({ ...d, io: { ...d.io } })),
    overlayFreeBytes: s.overlayFreeBytes,
    overlayTotalBytes: s.overlayTotalBytes,
    ...(s.vm !== undefined ? { vm: { ...s.vm } } : {}),
    ...(s.migration !== undefined ? { migration: { ...s.migration, disks: s.migration.disks.map((d) => ({ ...d })) } } : {}),
  };
}

/** Every repository with instant recovery on this server, by URL name. */
function served(ctx: ApiContext): [string, InstantRecovery][] {
  return [...ctx.repos.keys()].flatMap((name) => {
    try {
      return [[name, ctx.recovery(name)] as [string, InstantRecovery]];
    } catch {
      return [];
    }
  });
}

/** The session named `name` (in `repo` when given; else the one repository that has it). */
export function findSession(ctx: ApiContext, name: string, repo: string | undefined): { repo: string; recovery: InstantRecovery; info: SessionInfo } {
  const where = repo !== undefined ? [[repo, ctx.recovery(repo)] as [string, InstantRecovery]] : served(ctx);
  const found = where.flatMap(([r, rec]) => {
    const info = rec.info(name);
    return info ? [{ repo: r, recovery: rec, info }] : [];
  });
  if (found.length === 0) throw new LifeboatError('LFB_ERR_SESSION_NOT_FOUND', `no instant-recovery session "${name}" (see GET /api/v1/sessions)`);
  if (found.length > 1)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `repositories ${found.map((f) => f.repo).join(' and ')} both have a session "${name}": add ?repo=`);
  return found[0]!;
}

export function sessionRoutes(app: ApiServer, ctx: ApiContext, streams: EventStreams): void {
  const pollMs = ctx.deps.events?.pollMs ?? 500;
  const keepaliveMs = ctx.deps.events?.keepaliveMs ?? 15_000;
  const find = (name: string, repo: string | undefined) => findSession(ctx, name, repo);

  app.get(
    `${API_PREFIX}/sessions`,
    { schema: { summary: 'Instant-recovery sessions', tags: ['sessions'], querystring: SessionQuery, response: { 200: SessionList, ...ERROR_RESPONSES } } },
    async (request) => {
      const where = request.query.repo !== undefined ? [[request.query.repo, ctx.recovery(request.query.repo)] as const] : served(ctx);
      return {
        sessions: where.flatMap(([repo, rec]) => rec.list().map((s) => view(repo, s))),
        caches: where.map(([repo, rec]) => {
          const c = rec.cacheStats();
          return { repo, memory: { ...c.memory }, disk: c.disk === null ? null : { ...c.disk }, ...(c.diskOff !== undefined ? { diskOff: c.diskOff } : {}) };
        }),
      };
    },
  );

  app.get(
    `${API_PREFIX}/sessions/:name`,
    {
      schema: {
        summary: 'One session',
        tags: ['sessions'],
        params: SessionParams,
        querystring: SessionQuery,
        response: { 200: Type.Ref('Session'), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const f = find(request.params.name, request.query.repo);
      return view(f.repo, f.info);
    },
  );

  app.post(
    `${API_PREFIX}/sessions`,
    {
      schema: {
        summary: "Start a session: publish a point's disks over NFS and NBD (and boot it, with boot)",
        tags: ['sessions'],
        body: SessionStartBody,
        response: { 201: Type.Ref('Session'), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const b = request.body;
      checkBootNetwork(request.principal!, b.boot?.network);
      const info = await ctx.recovery(b.repo).start(b.job, b.point ?? 'latest', {
        name: b.name,
        disks: b.disks,
        ...(b.boot !== undefined ? { boot: { accel: b.boot.accel, network: b.boot.network } } : {}),
      });
      return reply.code(201).send(view(b.repo, info));
    },
  );

  app.delete(
    `${API_PREFIX}/sessions/:name`,
    {
      schema: {
        summary: 'Stop a session: its VM powered off, its overlays discarded, its point released',
        tags: ['sessions'],
        params: SessionParams,
        querystring: SessionQuery,
        response: { 204: { type: 'null', description: 'stopped' }, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const f = find(request.params.name, request.query.repo);
      await f.recovery.stop(request.params.name);
      return reply.code(204).send(null);
    },
  );

  app.post(
    `${API_PREFIX}/sessions/:name/disks`,
    {
      schema: {
        summary: 'Add an empty disk to a session (hot-plugged into a booted VM)',
        tags: ['sessions'],
        params: SessionParams,
        querystring: SessionQuery,
        body: AddDiskBody,
        response: { 200: Type.Ref('Session'), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const f = find(request.params.name, request.query.repo);
      return view(f.repo, await f.recovery.addDisk(request.params.name, request.body.size, request.body.name));
    },
  );

  app.post(
    `${API_PREFIX}/sessions/:name/migrate`,
    {
      schema: {
        summary: 'Start (or resume) moving a session to production storage; finish runs the final pass. Follow it with GET /sessions/{name}/events',
        tags: ['sessions'],
        params: SessionParams,
        querystring: SessionQuery,
        body: MigrateBody,
        response: { 200: Type.Ref('Session'), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const f = find(request.params.name, request.query.repo);
      const b = request.body;
      if (b.to !== undefined) await checkWriteTarget(ctx, request.principal!, b.to, 'migrate');
      const info = await f.recovery.migrate(request.params.name, {
        to: b.to,
        format: b.format ?? 'raw',
        rateBytesPerSec: b.rate ?? null,
        finish: b.finish === true,
        force: b.force === true,
      });
      return view(f.repo, info);
    },
  );

  app.get(
    `${API_PREFIX}/sessions/:name/events`,
    {
      schema: {
        summary:
          'Live state of a session and its migration as Server-Sent Events: `session` (when it changes), `end` (migration done or failed, or the session stopped)',
        tags: ['sessions'],
        params: SessionParams,
        querystring: SessionQuery,
        response: { ...EVENT_STREAM, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const { repo, recovery } = find(request.params.name, request.query.repo);
      const name = request.params.name;
      const stream = streams.start(request, reply, keepaliveMs);
      let last = '';
      pollInto(stream, pollMs, async () => {
        const info = recovery.info(name);
        if (info === undefined) {
          stream.send('end', { name, state: 'stopped' });
          return true;
        }
        const v = view(repo, info);
        const text = JSON.stringify(v);
        if (text !== last) stream.send('session', v);
        last = text;
        const m = info.migration?.state;
        if (m !== 'done' && m !== 'failed') return false;
        stream.send('end', { name, state: m });
        return true;
      });
    },
  );
}
