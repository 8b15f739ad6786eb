import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, isLifeboatError, type ErrorCode } from '../core/errors.js';
import { writeFileAtomic } from '../storage/index.js';
import type { InstantRecovery, StartOptions } from '../recovery/index.js';

/** Where a running server tells the CLI how to reach it: <repo>/instant/control.json (mode 0600). */
export interface ControlInfo {
  readonly pid: number;
  readonly port: number;
  readonly token: string;
  readonly nfsPort: number;
  readonly mountPort: number;
  readonly portmap: string;
  /** The name clients use for this server in nfs:// URLs. */
  readonly host: string;
}

export function controlFile(repoRoot: string): string {
  return join(repoRoot, 'instant', 'control.json');
}

/**
 * The local control API: JSON over HTTP on loopback, authenticated by a
 * bearer token kept in the repository (readable only by its owner).
 *   GET /sessions · POST /sessions {job, point, name?, cacheDir?, disks?, boot?} ·
 *   GET /sessions/<name> · DELETE /sessions/<name> ·
 *   POST /sessions/<name>/disks {size, name?} · POST /sessions/<name>/migrate {to?, format, rate?, finish}
 */
export async function startControlApi(
  repoRoot: string,
  ir: InstantRecovery,
  ports: Omit<ControlInfo, 'pid' | 'port' | 'token'>,
): Promise<{ close(): Promise<void>; info: ControlInfo }> {
  const token = randomBytes(24).toString('hex');
  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => send(res, 500, { code: 'LFB_ERR_INTERNAL', message: String(err) }));
  });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { code: 'LFB_ERR_USAGE', message: 'bad or missing token' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    try {
      if (req.method === 'GET' && url.pathname === '/sessions') return send(res, 200, ir.list());
      if (req.method === 'POST' && url.pathname === '/sessions') {
        const body = JSON.parse(await readBody(req)) as {
          job: string;
          point: string;
          name?: string;
          cacheDir?: string;
          disks?: number[];
          boot?: StartOptions['boot'];
        };
        const started = performance.now();
        const info = await ir.start(body.job, body.point, { name: body.name, cacheDir: body.cacheDir, disks: body.disks, boot: body.boot });
        return send(res, 201, { ...info, publishMs: Math.round(performance.now() - started), host: ports.host });
      }
      const m = /^\/sessions\/([^/]+)(\/disks|\/migrate)?$/.exec(url.pathname);
      const name = m ? decodeURIComponent(m[1]!) : '';
      if (req.method === 'GET' && m && !m[2]) {
        ir.session(name);
        return send(res, 200, ir.info(name));
      }
      if (req.method === 'DELETE' && m && !m[2]) {
        await ir.stop(name);
        return send(res, 200, { stopped: name });
      }
      if (req.method === 'POST' && m?.[2] === '/disks') {
        const body = JSON.parse(await readBody(req)) as { size: number; name?: string };
        return send(res, 201, await ir.addDisk(name, body.size, body.name));
      }
      if (req.method === 'POST' && m?.[2] === '/migrate') {
        const body = JSON.parse(await readBody(req)) as { to?: string; format?: 'raw' | 'qcow2'; rate?: number; finish?: boolean };
        return send(
          res,
          200,
          await ir.migrate(name, { to: body.to, format: body.format ?? 'raw', rateBytesPerSec: body.rate ?? null, finish: body.finish === true }),
        );
      }
      return send(res, 404, { code: 'LFB_ERR_USAGE', message: `no route ${req.method} ${url.pathname}` });
    } catch (err) {
      if (isLifeboatError(err)) return send(res, err.category === 'NotFound' ? 404 : 400, { code: err.code, message: err.message });
      throw err;
    }
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const info: ControlInfo = { pid: process.pid, port: typeof addr === 'object' && addr ? addr.port : 0, token, ...ports };
  await mkdir(join(repoRoot, 'instant'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(controlFile(repoRoot), Buffer.from(JSON.stringify(info)));
  return {
    info,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await rm(controlFile(repoRoot), { force: true });
    },
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (d: Buffer) => {
      s += d.toString();
      if (s.length > 1 << 20) req.destroy();
    });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** CLI side: calls the running server of a repository. */
export async function callControl<T>(repoRoot: string, method: string, path: string, body?: unknown): Promise<T> {
  let info: ControlInfo;
  try {
    info = JSON.parse(await readFile(controlFile(repoRoot), 'utf8')) as ControlInfo;
  } catch {
    throw new LifeboatError(
      'LFB_ERR_SERVER_NOT_RUNNING',
      `no Lifeboat server is running for ${repoRoot}; start one with \`lifeboat serve --repo ${repoRoot}\``,
    );
  }
  let res: Response;
  try {
    res = await fetch(`http://127.0.0.1:${info.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${info.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new LifeboatError(
      'LFB_ERR_SERVER_NOT_RUNNING',
      `the Lifeboat server of ${repoRoot} (pid ${info.pid}) does not answer; start it with \`lifeboat serve --repo ${repoRoot}\``,
    );
  }
  const json = (await res.json()) as T & { code?: ErrorCode; message?: string };
  if (!res.ok) throw new LifeboatError(json.code ?? 'LFB_ERR_INTERNAL', json.message ?? `HTTP ${res.status}`);
  return json;
}
