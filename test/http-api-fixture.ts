/**
 * What the HTTP API tests share: a repository with a source disk, a real
 * SQLite catalog with one user (and API token) per role, the API over them,
 * a job runner that backs up in the process and records runs in the catalog,
 * and a validator of responses against the served OpenAPI document.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { LightMyRequestResponse } from 'fastify';
import { LifeboatService } from '../src/app/index.js';
import { Authenticator, LoginRateLimiter, addUser, createToken } from '../src/auth/index.js';
import { openCatalog, type Catalog, type RunRecord, type RunTrigger } from '../src/catalog/index.js';
import { systemClock, type Clock } from '../src/core/clock.js';
import { isLifeboatError } from '../src/core/errors.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository } from '../src/repository/index.js';
import { createHttpApi, type ApiServer } from '../src/service/http/api.js';
import type { HttpApiDeps, JobRunner, RunProgress } from '../src/service/http/deps.js';
import { randomBytes, rng, tempDir } from './helpers.js';

// ajv-formats is CommonJS: its default export arrives as the module object under NodeNext.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

export const ROLES = ['admin', 'operator', 'viewer', 'mover'] as const;
export const PASSWORD = 'correct horse battery';
/** Cheap scrypt for test users: the hash format is the same, the work small. */
const FAST_SCRYPT = { N: 2 ** 10, r: 8, p: 1 };

/**
 * Runs backups in the test's process, as the server's runtime does: the run
 * is recorded queued, then running, then with its end, its point, its bytes
 * and log lines; stop aborts it between blocks.
 */
export class InProcessRunner implements JobRunner {
  private readonly controllers = new Map<number, AbortController>();
  private readonly finished = new Map<number, Promise<void>>();
  readonly watchers = new Map<number, Set<(p: RunProgress) => void>>();

  constructor(
    private readonly service: LifeboatService,
    private readonly catalog: Catalog,
    private readonly clock: Clock,
  ) {}

  async runNow(repo: string, job: string, trigger: RunTrigger): Promise<RunRecord> {
    const run = await this.catalog.createRun({ repo, job, trigger, attempt: 1, retryOf: null, queuedAt: this.clock.now().toISOString() });
    const ac = new AbortController();
    this.controllers.set(run.id, ac);
    this.finished.set(run.id, this.execute(run, ac.signal));
    return run;
  }

  /** Resolves when the run has ended and its end is recorded. */
  async ended(id: number): Promise<void> {
    await this.finished.get(id);
  }

  async stop(id: number): Promise<void> {
    this.controllers.get(id)?.abort();
    await this.finished.get(id);
  }

  watch(id: number, listener: (p: RunProgress) => void, ended?: () => void): () => void {
    const set = this.watchers.get(id) ?? new Set();
    this.watchers.set(id, set);
    set.add(listener);
    let watching = true;
    // As the server's runtime: told once the run's end is recorded.
    const tell = (): void => {
      if (watching) ended?.();
    };
    void this.finished.get(id)?.then(tell, tell);
    return () => {
      watching = false;
      set.delete(listener);
      if (set.size === 0) this.watchers.delete(id);
    };
  }

  private async execute(run: RunRecord, signal: AbortSignal): Promise<void> {
    const now = (): string => this.clock.now().toISOString();
    await this.catalog.updateRun(run.id, { state: 'running', startedAt: now() });
    await this.catalog.appendLog(run.id, [{ at: now(), level: 'info', message: `backup of ${run.job} started` }]);
    try {
      const r = await this.service.backup(run.repo, run.job, {
        signal,
        onProgress: (p) => {
          for (const w of this.watchers.get(run.id) ?? []) w(p);
        },
      });
      await this.catalog.appendLog(run.id, [{ at: now(), level: 'info', message: `made ${r.kind} ${r.pointId} (${r.bytesStored} bytes stored)` }]);
      await this.catalog.updateRun(run.id, {
        state: 'succeeded',
        endedAt: now(),
        bytesRead: r.bytesRead,
        bytesStored: r.bytesStored,
        steps: r.steps,
        pointId: r.pointId,
      });
    } catch (err) {
      await this.catalog.appendLog(run.id, [{ at: now(), level: 'error', message: err instanceof Error ? err.message : String(err) }]);
      await this.catalog.updateRun(run.id, {
        state: signal.aborted ? 'stopped' : 'failed',
        endedAt: now(),
        errorCode: isLifeboatError(err) ? err.code : 'LFB_ERR_INTERNAL',
        errorMessage: err instanceof Error ? err.message : String(err),
      });
    }
  }
}

export interface Fixture {
  readonly dir: string;
  readonly repo: string;
  /** The repository's name in URLs. */
  readonly repoName: string;
  /** A 3 MiB source disk with a hole. */
  readonly source: string;
  readonly catalog: Catalog;
  readonly recovery: InstantRecovery;
  readonly runner: InProcessRunner;
  readonly api: ApiServer;
  readonly tokens: Record<(typeof ROLES)[number], string>;
  readonly deps: HttpApiDeps;
  close(): Promise<void>;
}

export async function makeFixture(opts: { https?: HttpApiDeps['https']; events?: HttpApiDeps['events'] } = {}): Promise<Fixture> {
  const { dir, cleanup } = await tempDir('lifeboat-http-');
  const clock = systemClock;
  const logger = createLogger('error');
  const service = new LifeboatService(clock);
  const repo = join(dir, 'backups');
  await service.initRepository(repo, 256 * 1024, { codec: 'zstd', level: 1 });
  const source = join(dir, 'web01.img');
  const data = randomBytes(rng(14), 3 * 1024 * 1024);
  data.fill(0, 1024 * 1024, 2 * 1024 * 1024);
  await writeFile(source, data);
  const catalog = await openCatalog(join(dir, 'state'));
  const tokens = {} as Record<(typeof ROLES)[number], string>;
  for (const role of ROLES) {
    await addUser(catalog, role, role, PASSWORD, clock, FAST_SCRYPT);
    tokens[role] = (await createToken(catalog, role, 'tests', clock)).token;
  }
  const recovery = new InstantRecovery(await Repository.open(repo), clock, logger);
  const runner = new InProcessRunner(service, catalog, clock);
  const deps: HttpApiDeps = {
    service,
    repos: [repo],
    recovery: new Map([[repo, recovery]]),
    catalog,
    auth: new Authenticator(catalog, { clock, limiter: new LoginRateLimiter(clock) }),
    runner,
    clock,
    logger,
    ...(opts.https ? { https: opts.https } : {}),
    events: opts.events ?? { pollMs: 20, keepaliveMs: 1000 },
    // Operators restore and migrate into these; restored/ and production/ are made by the tests that use them.
    targetFolders: [join(dir, 'restored'), join(dir, 'production')],
  };
  const api = await createHttpApi(deps);
  return {
    dir,
    repo,
    repoName: 'backups',
    source,
    catalog,
    recovery,
    runner,
    api,
    tokens,
    deps,
    async close() {
      await api.close();
      await recovery.close();
      await catalog.close();
      await cleanup();
    },
  };
}

type OpenApiDoc = {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }>; security?: unknown[]; 'x-lifeboat-role'?: string }>>;
};

/** Checks responses against the response schemas of the document the server serves. */
export class OpenApiValidator {
  private readonly ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));

  constructor(readonly doc: OpenApiDoc) {
    this.ajv.addSchema(doc as object, 'openapi');
  }

  static async fetch(api: ApiServer): Promise<OpenApiValidator> {
    const r = await api.inject({ method: 'GET', url: '/api/v1/openapi.json' });
    assert.equal(r.statusCode, 200);
    return new OpenApiValidator(r.json());
  }

  /** Every operation: [method, path template]. */
  operations(): [string, string][] {
    return Object.entries(this.doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => [m.toUpperCase(), path] as [string, string]));
  }

  /** The compiled JSON schema of one response of one operation. */
  schemaOf(method: string, template: string, status: string): ValidateFunction {
    const pointer = ['paths', template, method.toLowerCase(), 'responses', status, 'content', 'application/json', 'schema']
      .map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1')))
      .join('/');
    const validate = this.ajv.getSchema(`openapi#/${pointer}`);
    assert.ok(validate, `no schema at ${pointer}`);
    return validate;
  }

  /** The response of `method template` with this status, validated; its body parsed. */
  check(method: string, template: string, res: LightMyRequestResponse): unknown {
    const op = this.doc.paths[template]?.[method.toLowerCase()];
    assert.ok(op, `the document has no ${method} ${template}`);
    const status = String(res.statusCode);
    const key = [status, `${status[0]}XX`, `${status[0]}xx`, 'default'].find((k) => k in op.responses);
    assert.ok(key !== undefined, `${method} ${template} answered ${status}, which its document does not list (${res.body.slice(0, 200)})`);
    const content = op.responses[key]!.content;
    if (content === undefined) {
      assert.equal(res.body, '', `${method} ${template} ${status} has no content in the document`);
      return undefined;
    }
    const type = String(res.headers['content-type'] ?? '').split(';')[0]!;
    assert.ok(type in content, `${method} ${template} ${status} answered ${type}; the document lists ${Object.keys(content).join(', ')}`);
    if (type !== 'application/json') return res.body;
    const validate = this.schemaOf(method, template, key);
    const body: unknown = res.json();
    assert.ok(validate(body), `${method} ${template} ${status}: ${this.ajv.errorsText(validate.errors)}\n${res.body.slice(0, 500)}`);
    return body;
  }
}

/** A path template with its parameters filled in. */
export function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    assert.ok(k in values, `no value for path parameter ${k}`);
    return encodeURIComponent(values[k]!);
  });
}

/** Job `web01` over the fixture's source disk, created through the API by the admin. */
export async function createWeb01(fx: Fixture): Promise<void> {
  const created = await fx.api.inject({
    method: 'POST',
    url: `/api/v1/repositories/${fx.repoName}/jobs`,
    headers: { authorization: `Bearer ${fx.tokens.admin}` },
    payload: { name: 'web01', disks: [fx.source] },
  });
  assert.equal(created.statusCode, 201, created.body);
}

/** The events of a Server-Sent Events body, comments left out. */
export function parseEvents(text: string): { event: string; data: unknown }[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n').filter((l) => !l.startsWith(':')))
    .filter((lines) => lines.length > 0 && lines[0] !== '')
    .map((lines) => ({
      event: lines.find((l) => l.startsWith('event: '))!.slice(7),
      data: JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as unknown,
    }));
}
