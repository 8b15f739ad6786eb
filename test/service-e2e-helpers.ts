import type { RunRecord } from '../src/catalog/index.js';
/**
 * What the service's end-to-end tests (test/service-e2e.test.ts) share: the
 * CLI, an admin's API token, source disks that take time to back up, the
 * HTTP API of a real server with every answer checked against its OpenAPI
 * document, following a run to the middle of its data, and servers killed
 * however a test ends.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { cli, tempDir, type CliResult } from './helpers.js';
import { OpenApiValidator, fill } from './http-api-fixture.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const PASSWORD = 'e2e horse battery staple';

/** A run as the API shows it: the catalog's record and the repository's name in URLs. */
export type Run = RunRecord & { readonly repoName: string };
export interface RunDetail {
  run: Run;
  tasks: { disk: number; state: string }[];
  log: { seq: number; level: string; message: string }[];
}

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

export const lifeboat = async (args: string[]): Promise<string> => ok(await cli(args), args.slice(0, 2).join(' '));

/** `lifeboat user add` with the password on standard input. */
const cliWithInput = (args: string[], input: string): Promise<CliResult> => cli(args, {}, input);

/** An admin and an API token in the state folder the server of `repo` uses (startServer's `${repo}.state`). */
export async function adminToken(repo: string): Promise<string> {
  const stateDir = `${repo}.state`;
  ok(await cliWithInput(['user', 'add', 'ops', '--role', 'admin', '--state-dir', stateDir, '--password-stdin'], `${PASSWORD}\n`), 'user add');
  const created = JSON.parse(await lifeboat(['token', 'create', '--user', 'ops', '--state-dir', stateDir, '--json'])) as { token: string };
  return created.token;
}

/** A source disk of `mib` MiB of base64 text: it compresses, so a run spends measurable time on it (random bytes are stored as they are). Returns its SHA-256. */
export async function writeTextDisk(path: string, mib: number): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(path, 'w');
  try {
    // 768 KiB of random bytes are 1 MiB of base64.
    for (let i = 0; i < mib; i++) {
      const chunk = Buffer.from(randomBytes(768 * 1024).toString('base64'));
      hash.update(chunk);
      await fh.write(chunk);
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The HTTP API of a running server, every answer checked against its OpenAPI document. */
export class Api {
  private constructor(
    private readonly base: string,
    private readonly token: string,
    private readonly doc: OpenApiValidator,
  ) {}

  static async connect(httpUrl: string, token: string): Promise<Api> {
    const res = await fetch(`${httpUrl}/openapi.json`);
    assert.equal(res.status, 200);
    return new Api(httpUrl.replace(/\/api\/v1$/, ''), token, new OpenApiValidator((await res.json()) as ConstructorParameters<typeof OpenApiValidator>[0]));
  }

  /** `template` as the document names it (/api/v1/runs/{id}); the answer must have status `want`. */
  async call<T>(
    method: string,
    template: string,
    params: Record<string, string> = {},
    query: Record<string, string> = {},
    want = 200,
    body?: unknown,
  ): Promise<T> {
    const qs = new URLSearchParams(query).toString();
    const res = await fetch(`${this.base}${fill(template, params)}${qs ? `?${qs}` : ''}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    assert.equal(res.status, want, `${method} ${template}: ${res.status} ${text}`);
    const shim = {
      statusCode: res.status,
      body: text,
      headers: { 'content-type': res.headers.get('content-type') ?? '' },
      json: () => JSON.parse(text) as unknown,
    } as unknown as LightMyRequestResponse;
    return this.doc.check(method, template, shim) as T;
  }

  /** The job's runs, oldest first. */
  async runs(job: string): Promise<Run[]> {
    const page = await this.call<{ runs: Run[]; next: number | null }>('GET', '/api/v1/runs', {}, { job, limit: '200' });
    assert.equal(page.next, null, 'more runs than one page');
    return page.runs.sort((a, b) => a.id - b.id);
  }

  /** `job set --schedule` through the API: the scheduler takes it at once. */
  async setSchedule(job: string, schedule: string): Promise<void> {
    await this.call('PATCH', '/api/v1/repositories/{repo}/jobs/{job}', { repo: 'repo', job }, {}, 200, { schedule });
  }

  run(id: number): Promise<RunDetail> {
    return this.call<RunDetail>('GET', '/api/v1/runs/{id}', { id: String(id) });
  }

  /**
   * Waits until run `id` is running, then follows its events until a progress
   * event says its data is partly done (one comes every 64 MiB): a kill right
   * after lands in the middle of the data, however fast the machine is.
   */
  async midway(id: number, ms = 60_000): Promise<{ bytesDone: number; bytesTotal: number }> {
    const state = await waitFor(
      `run ${id} to start`,
      ms,
      async () => {
        const r = (await this.run(id)).run;
        return r.state === 'queued' ? undefined : r.state;
      },
      20,
    );
    assert.equal(state, 'running', `run ${id} ended before the test could follow it`);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ms);
    try {
      const res = await fetch(`${this.base}/api/v1/runs/${id}/events`, { headers: { authorization: `Bearer ${this.token}` }, signal: abort.signal });
      assert.equal(res.status, 200);
      const decoder = new TextDecoder();
      let text = '';
      for await (const chunk of res.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? 'null';
          if (event === 'end') assert.fail(`run ${id} ended before the test saw it midway: ${data}`);
          if (event !== 'progress') continue;
          const p = JSON.parse(data) as { bytesDone: number; bytesTotal: number };
          assert.ok(p.bytesDone < p.bytesTotal, `run ${id}: the first progress seen is its last (${data}); give it a bigger disk`);
          return p;
        }
      }
      return assert.fail(`the events of run ${id} stopped before any progress`);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }
}

/** Polls `probe` until it returns a value (not undefined); fails after `ms` with what it saw last. */
export async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>, everyMs = 100): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A cron expression (seconds first) firing once a minute, `aheadMs` from now: it cannot fire again within the minute the scenario needs. */
export function oncePerMinuteFrom(aheadMs: number): string {
  return oncePerMinuteAt(aheadMs).cron;
}

/** The same, with the time of its next fire (ms). */
export function oncePerMinuteAt(aheadMs: number): { cron: string; at: number } {
  const at = Math.floor((Date.now() + aheadMs) / 1000) * 1000;
  return { cron: `${new Date(at).getSeconds()} * * * * *`, at };
}

/**
 * A test's temporary folder and the servers it starts. When the test ends,
 * however it ends, the servers still running are killed first and the folder
 * removed after (one hook: a server still running writes into the folder
 * while it is removed, and a failing hook skips the hooks after it).
 */
export async function scenario(
  t: TestContext,
  prefix: string,
): Promise<{ dir: string; servers: { start: (repo: string, args?: string[]) => Promise<Server & { stderr: () => string }> } }> {
  const { dir, cleanup } = await tempDir(prefix);
  const started: Server[] = [];
  t.after(async () => {
    try {
      for (const s of started) if (s.proc.exitCode === null && s.proc.signalCode === null) await kill9(s);
    } finally {
      await cleanup();
    }
  });
  return {
    dir,
    servers: {
      async start(repo, args = []) {
        const s = await startServer(repo, ['--no-portmap', ...args]);
        started.push(s);
        // Only standard error: where journald reads the one line per run.
        let stderr = '';
        s.proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        return { ...s, stderr: () => stderr };
      },
    },
  };
}

/** MiB of a source whose run is stopped or killed midway (Api.midway): four progress events, the first at a quarter. */
export const LONG_RUN_MIB = 256;

export const ended = (r: Run): boolean => !['queued', 'running'].includes(r.state);
