import type { RunRecord } from '../src/catalog/index.js';
/**
 * What bench:service drives: a real `lifeboat serve` process (plain HTTP on
 * an ephemeral port, jobs by request only), an admin's API token, and a
 * keep-alive HTTP client that times each request.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { bin } from './bench-util.js';

export interface Served {
  readonly proc: ChildProcess;
  /** e.g. http://127.0.0.1:40123 (without /api/v1). */
  readonly base: string;
  stop(): Promise<void>;
}

/** Starts `lifeboat serve` for `repo` with its catalog in `stateDir` (`nodeArgs` before the script); resolves once the HTTP API listens. */
export function startServe(repo: string, stateDir: string, nodeArgs: readonly string[] = []): Promise<Served> {
  const args = ['serve', '--repo', repo, '--state-dir', stateDir, '--no-scheduler', '--http-port', '0', '--no-tls'];
  args.push('--no-portmap', '--nfs-port', '0', '--mount-port', '0', '--nbd-port', '0');
  // BENCH_SERVE_ARGS: more flags for the server (e.g. "--backup-nice 19"), to compare settings in the same bench.
  args.push(...(process.env['BENCH_SERVE_ARGS'] ?? '').split(' ').filter((a) => a !== ''));
  // BENCH_SERVE_NODE_ARGS: Node's own flags for the server (e.g. "--single-threaded-gc"), split at spaces.
  const nodeFlags = [...nodeArgs, ...(process.env['BENCH_SERVE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')];
  const proc = spawn(process.execPath, [...nodeFlags, bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`serve did not start in 60 s:\n${output}`));
    }, 60_000);
    const look = (d: Buffer): void => {
      output += d.toString();
      const m = /HTTP API on (http:\/\/\S+?)(\/api\/v1)?[;\s]/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, base: m[1]!, stop });
      }
    };
    proc.stdout.on('data', look);
    proc.stderr.on('data', look);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}) before it listened:\n${output}`));
    });
  });
}

/** Runs `lifeboat args…` with `input` on standard input; its standard output, or an error with its standard error. */
export function lifeboatWithInput(args: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`lifeboat ${args.slice(0, 2).join(' ')}: exit ${code}\n${err}`))));
    p.stdin.end(input);
  });
}

/** An admin user and an API token in `stateDir`'s catalog. */
export async function adminToken(stateDir: string): Promise<string> {
  await lifeboatWithInput(['user', 'add', 'bench', '--role', 'admin', '--state-dir', stateDir, '--password-stdin'], 'bench-password-1234\n');
  const created = JSON.parse(await lifeboatWithInput(['token', 'create', '--user', 'bench', '--state-dir', stateDir, '--json'])) as { token: string };
  return created.token;
}

export interface Answer<T> {
  readonly status: number;
  readonly body: T;
  /** From the request's start to its answer's last byte. */
  readonly ms: number;
}

/** One keep-alive connection to the API, as a console or a script holds it. */
export class ApiClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });

  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  call<T>(method: string, path: string, want = 200): Promise<Answer<T>> {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, { method, agent: this.agent, headers: { authorization: `Bearer ${this.token}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const ms = performance.now() - t0;
          const text = Buffer.concat(chunks).toString();
          if (res.statusCode !== want) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
          else resolve({ status: res.statusCode, body: JSON.parse(text) as T, ms });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** Reads a Server-Sent Events stream on a connection of its own until `stop` says so for an event (rejects if the stream ends first). */
  events(path: string, stop: (event: string, data: string) => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, { headers: { authorization: `Bearer ${this.token}` } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`GET ${path}: ${res.statusCode}`));
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
            const block = text.slice(0, end).split('\n');
            text = text.slice(end + 2);
            const event = block.find((l) => l.startsWith('event: '))?.slice(7);
            if (event !== undefined && stop(event, block.find((l) => l.startsWith('data: '))?.slice(6) ?? '')) {
              req.destroy();
              resolve();
              return;
            }
          }
        });
        // A stream that ends before the event asked for (an `error` event, a server stopping) is a failure of the bench.
        res.on('end', () => reject(new Error(`GET ${path}: the stream ended before the event waited for`)));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The fields of a run (the catalog's record) the benchmark reads. */
export type RunView = Pick<
  RunRecord,
  'id' | 'state' | 'queuedAt' | 'startedAt' | 'endedAt' | 'bytesRead' | 'bytesStored' | 'steps' | 'changeMethod' | 'errorCode' | 'errorMessage'
>;

/**
 * Follows run `id` on its event stream (its own connection, as the console
 * does) until `end`; the run's record, and when its end was seen. No polling:
 * a GET every few milliseconds costs the server and this process more CPU
 * than a small incremental backup, and backups run at a lower priority.
 */
export async function waitForRun(api: ApiClient, id: number): Promise<{ run: RunView; seenAt: number }> {
  await api.events(`/api/v1/runs/${id}/events`, (event) => event === 'end');
  const seenAt = performance.now();
  const { body } = await api.call<{ run: RunView }>('GET', `/api/v1/runs/${id}?logLimit=1`);
  return { run: body.run, seenAt };
}

/** Catalog milliseconds from start to end of an ended run. */
export function catalogMs(run: RunView): number {
  if (run.startedAt === null || run.endedAt === null) throw new Error(`run ${run.id} has no start or end (${run.state})`);
  return Date.parse(run.endedAt) - Date.parse(run.startedAt);
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat; after "(comm) " the state is field 3, so at index 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Waits until a started server has finished starting (its catalog brought up to date from the repository, its
 * HTTP schemas compiled): under 20 ms of CPU in 300 ms, or 15 s at most. Returns the milliseconds waited, so a
 * timed run measures the server at work rather than its start-up.
 */
export async function settled(served: Served): Promise<number> {
  const t0 = performance.now();
  const pid = served.proc.pid!;
  let before = cpuSeconds(pid);
  while (performance.now() - t0 < 15_000) {
    await new Promise((r) => setTimeout(r, 300));
    const now = cpuSeconds(pid);
    if (now - before < 0.02) break;
    before = now;
  }
  return performance.now() - t0;
}
