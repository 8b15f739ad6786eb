/**
 * The HTTP API (`/api/v1`): fastify with a JSON schema for every route's
 * parameters, query, body and responses, published as an OpenAPI 3.1
 * document at GET /api/v1/openapi.json. createHttpApi returns the fastify
 * instance, not listening: `serve` listens with it (HTTPS, or HTTP on
 * loopback), tests inject requests into it.
 *
 * Every route but the document and login needs a principal (a bearer token
 * or a console cookie); each route says which role it needs (route config
 * `role`; default viewer for GET, operator for the rest), and the OpenAPI
 * document says it too (`x-lifeboat-role`, and `security`).
 */
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifySchemaCompiler } from 'fastify';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { TSchema } from 'typebox';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { LifeboatError } from '../../core/errors.js';
import { SESSION_COOKIE, requirePermission, type Permission } from '../../auth/index.js';
import type { UserRole } from '../../catalog/catalog.js';
import { API_PREFIX, apiContext } from './context.js';
import type { HttpApiDeps, Principal } from './deps.js';
import { errorReply } from './errors.js';
import { ERROR_RESPONSES, ErrorBody, JobDefinition, Migration, RunRecord, Session } from './schemas.js';
import { EventStreams } from './sse.js';
import { authRoutes } from './auth.js';
import { repositoryRoutes } from './repositories.js';
import { jobRoutes } from './jobs.js';
import { pointRoutes } from './points.js';
import { runRoutes } from './runs.js';
import { sessionRoutes } from './sessions.js';
import { serveConsole } from './console.js';
import { screenRoutes } from './screen.js';
import { surebackupRoutes } from './surebackup.js';
import { surebackupJobRoutes } from './surebackup-jobs.js';
import { moverRoutes } from './movers.js';
import { copyRoutes } from './copies.js';
import { tierRoutes } from './tier.js';
import { fileRoutes } from './files.js';

export type { HttpApiDeps } from './deps.js';

// ajv-formats is CommonJS: under NodeNext its default export is the module object, callable.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
export type HttpApi = FastifyInstance;
export type ApiServer = ReturnType<typeof plainServer>;

/** Who may call a route: `public` needs no principal. */
export type RouteRole = 'public' | UserRole;
/** What each route role needs of the caller (src/auth/permissions.ts). */
const PERMISSION: Record<UserRole, Permission> = { viewer: 'read', operator: 'operate', admin: 'administer', mover: 'move' };

declare module 'fastify' {
  interface FastifyContextConfig {
    role?: RouteRole;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

/** Event streams open at once, all clients together (a console keeps one or two). */
const DEFAULT_MAX_STREAMS = 256;
/** Largest request body: job settings and restore targets, never data. */
const BODY_LIMIT = 64 * 1024;

const SERVER_OPTIONS = {
  logger: false,
  bodyLimit: BODY_LIMIT,
  // HEAD would open event streams; nothing here needs it.
  exposeHeadRoutes: false,
  // Live event streams must not keep a closing server waiting.
  forceCloseConnections: true,
  return503OnClosing: true,
};

function plainServer() {
  return Fastify(SERVER_OPTIONS).withTypeProvider<TypeBoxTypeProvider>();
}

function baseServer(https: HttpApiDeps['https']): ApiServer {
  if (https === undefined) return plainServer();
  // An HTTPS instance differs only in its raw server's type: routes, hooks and inject are the same.
  return Fastify({ ...SERVER_OPTIONS, https: { cert: https.cert, key: https.key } }).withTypeProvider<TypeBoxTypeProvider>() as unknown as ApiServer;
}

/**
 * Request validation. Paths and query strings are text: their numbers and
 * booleans are coerced by the schema, and a repeated parameter is an array.
 * JSON bodies are typed already and are taken as they are: coercing them
 * would turn `"retries": null` into 0 or a string into a one-element list.
 */
function requestValidators(shared: readonly object[]): FastifySchemaCompiler<TSchema> {
  const make = (coerce: boolean): Ajv => {
    const ajv = addFormats(new Ajv({ coerceTypes: coerce ? 'array' : false, useDefaults: true, removeAdditional: false, allErrors: false, strict: false }));
    for (const s of shared) ajv.addSchema(s);
    return ajv;
  };
  const text = make(true);
  const json = make(false);
  return ({ schema, httpPart }) => (httpPart === 'body' ? json : text).compile(schema);
}

function roleOf(method: string | readonly string[], config: { role?: RouteRole } | undefined): RouteRole {
  if (config?.role !== undefined) return config.role;
  const methods = typeof method === 'string' ? [method] : method;
  return methods.every((m) => m === 'GET' || m === 'HEAD') ? 'viewer' : 'operator';
}

export async function createHttpApi(deps: HttpApiDeps): Promise<ApiServer> {
  const app = baseServer(deps.https);
  const ctx = apiContext(deps);
  const streams = new EventStreams(deps.events?.maxStreams ?? DEFAULT_MAX_STREAMS);
  const auth = deps.auth;

  app.decorateRequest('principal', undefined);
  // First: its security headers go on every answer, and its files are registered before the OpenAPI document collects routes.
  await serveConsole(app, { https: deps.https !== undefined });
  const shared = [ErrorBody, JobDefinition, RunRecord, Migration, Session];
  for (const s of shared) app.addSchema(s);
  app.setValidatorCompiler(requestValidators(shared));

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Lifeboat API',
        version: '1',
        description: 'Backups, restore points, runs and instant recovery of a Lifeboat server. Errors are {code, message} with a stable code (docs/errors.md).',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'an API token (`lifeboat token create`)' },
          cookie: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'a console login; send X-CSRF-Token with changes' },
        },
      },
    },
    // Shared schemas keep their names in components/schemas.
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
  });

  // Each route's role goes into its OpenAPI operation, so the document says who may call what.
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    const role = roleOf(route.method, route.config);
    route.config = { ...route.config, role };
    const schema = (route.schema ?? {}) as Record<string, unknown>;
    route.schema = {
      ...schema,
      security: role === 'public' ? [] : [{ bearer: [] }, { cookie: [] }],
      'x-lifeboat-role': role,
    } as typeof route.schema;
  });

  // Before the body is parsed or validated: who is asking, and may they.
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const role = request.routeOptions.config.role;
    if (role === undefined || role === 'public') return;
    const principal = await auth.authenticate(request.headers, request.method);
    requirePermission(principal, PERMISSION[role]);
    request.principal = principal;
  });

  app.setErrorHandler((err, request, reply) => {
    const r = errorReply(err);
    if (r.internal)
      deps.logger.error('http: request failed', {
        method: request.method,
        url: request.url,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
    const retry = err instanceof LifeboatError ? err.details['retryAfterSeconds'] : undefined;
    if (r.status === 429 && typeof retry === 'number') void reply.header('retry-after', String(Math.ceil(retry)));
    return reply.code(r.status).type('application/json').send(r.body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type('application/json')
      .send({ code: 'LFB_ERR_ROUTE_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
  app.addHook('preClose', async () => streams.closeAll());
  // Answers carry job settings, paths and tokens: never cached, never sniffed as another type.
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
  });
  // LIFEBOAT_LOG=debug: one line per request, with who made it.
  app.addHook('onResponse', async (request, reply) => {
    deps.logger.debug('http: request', {
      method: request.method,
      url: request.url.split('?')[0],
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
      ...(request.principal ? { user: request.principal.user } : {}),
      client: request.ip,
    });
  });

  app.get(
    `${API_PREFIX}/openapi.json`,
    {
      config: { role: 'public' },
      schema: { summary: 'This document', tags: ['meta'], response: { 200: { type: 'object', additionalProperties: true }, ...ERROR_RESPONSES } },
    },
    async () => app.swagger() as unknown as Record<string, unknown>,
  );

  authRoutes(app, ctx);
  repositoryRoutes(app, ctx);
  jobRoutes(app, ctx);
  pointRoutes(app, ctx);
  runRoutes(app, ctx, streams);
  sessionRoutes(app, ctx, streams);
  surebackupRoutes(app, ctx);
  surebackupJobRoutes(app, ctx);
  copyRoutes(app, ctx);
  tierRoutes(app, ctx);
  moverRoutes(app, ctx);
  fileRoutes(app, ctx);
  await screenRoutes(app, ctx);
  await app.ready();
  return app;
}
