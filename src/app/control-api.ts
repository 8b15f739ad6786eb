import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LifeboatError, fromFsError, isLifeboatError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { InstantRecovery } from '../recovery/index.js';
import { locationText, repositoryHostRoot } from '../repository/location.js';
import { AllowList } from './allow-list.js';
import { parseAddDiskRequest, parseMigrateRequest, parseRunRequest, parseStartRequest } from './control-requests.js';
import type { ControlRuns } from './control-runs.js';
import { MAX_REPORT_BODY_BYTES, parseLabReport, type ControlLabReports } from './control-lab-reports.js';
import { handleFilesRoute, type ControlFiles } from './control-files.js';

/** Where a running server tells the CLI how to reach it: <repo>/instant/control.json (mode 0600). */
export interface ControlInfo {
  readonly pid: number;
  readonly port: number;
  readonly token: string;
  readonly nfsPort: number;
  readonly mountPort: number;
  readonly nbdPort?: number;
  readonly portmap: string;
  /** The name clients use for this server in nfs:// URLs. */
  readonly host: string;
}

/** Where a repository's server keeps its port and token: in the repository's host side (a folder's own `instant/`). */
export function controlFile(repoRoot: string): string {
  return join(repositoryHostRoot(repoRoot), 'instant', 'control.json');
}

/** Request bodies are a few hundred bytes; anything near this is not the CLI. */
export const MAX_CONTROL_BODY_BYTES = 64 * 1024;

const LOOPBACK = AllowList.parse(AllowList.LOOPBACK);

/**
 * The local control API: JSON over HTTP on 127.0.0.1, authenticated by a
 * bearer token kept in the repository (instant/ is 0700, control.json 0600).
 * It answers loopback peers only, whatever `--allow` says: it is how the
 * local CLI drives the server, never a network service.
 *   GET /sessions · POST /sessions {job, point, name?, cacheDir?, disks?, boot?} ·
 *   GET /sessions/<name> · DELETE /sessions/<name> ·
 *   POST /sessions/<name>/disks {size, name?} · POST /sessions/<name>/migrate {to?, format?, rate?, finish?, force?} ·
 *   POST /runs {job, activeFull?, acceptSourceChange?, waitMs?} · GET /runs/<id> · DELETE /runs/<id> (backups handed to the service) ·
 *   POST /surebackup/reports {the report of `surebackup run`} (recorded in the service's catalog; bodies up to 1 MiB) ·
 *   POST /files/ls|find|copy (file-level recovery through the server's file sessions: control-files.ts)
 * Errors: {code, message} with 400 (bad request, LFB_ERR_USAGE for a body
 * that is not what the route takes), 401 (token), 404 (no such session or
 * route), 413 (body over 64 KiB), 500 (a bug).
 */
export async function startControlApi(
  repoRoot: string,
  ir: InstantRecovery,
  ports: Omit<ControlInfo, 'pid' | 'port' | 'token'>,
  opts: {
    logger?: Logger;
    runs?: () => ControlRuns | undefined;
    labReports?: () => ControlLabReports | undefined;
    files?: () => ControlFiles | undefined;
  } = {},
): Promise<{ close(): Promise<void>; info: ControlInfo }> {
  const token = randomBytes(24).toString('hex');
  // Both sides hashed to 32 bytes: timingSafeEqual needs equal lengths, and the compare then tells nothing about the token.
  const expected = createHash('sha256').update(`Bearer ${token}`).digest();
  const authorized = (req: IncomingMessage): boolean =>
    timingSafeEqual(
      createHash('sha256')
        .update(req.headers.authorization ?? '')
        .digest(),
      expected,
    );

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!authorized(req)) return send(res, 401, { code: 'LFB_ERR_USAGE', message: 'bad or missing token' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/sessions') return send(res, 200, ir.list());
    if (req.method === 'GET' && url.pathname === '/sessions/cache') return send(res, 200, ir.cacheStats());
    if (req.method === 'POST' && url.pathname === '/sessions') {
      const body = parseStartRequest(await readBody(req));
      const started = performance.now();
      const info = await ir.start(body.job, body.point, body.options);
      return send(res, 201, { ...info, publishMs: Math.round(performance.now() - started), host: ports.host });
    }
    if (req.method === 'POST' && url.pathname === '/surebackup/reports') {
      const reports = opts.labReports?.();
      if (!reports) return send(res, 404, { code: 'LFB_ERR_SERVER_NOT_RUNNING', message: 'this server keeps no catalog of SureBackup reports' });
      return send(res, 201, await reports.record(parseLabReport(await readBody(req, MAX_REPORT_BODY_BYTES))));
    }
    const reply = (status: number, body: unknown): void => send(res, status, body);
    if (await handleFilesRoute(req, res, url.pathname, opts.files?.(), () => readBody(req), reply)) return;
    const runs = opts.runs?.();
    const r = /^\/runs(?:\/(\d{1,15}))?$/.exec(url.pathname);
    if (r) {
      if (!runs) return send(res, 404, { code: 'LFB_ERR_SERVER_NOT_RUNNING', message: 'this server runs no jobs' });
      if (req.method === 'POST' && !r[1]) return send(res, 202, await runs.start(parseRunRequest(await readBody(req))));
      if (req.method === 'GET' && r[1]) return send(res, 200, await runs.get(Number(r[1])));
      if (req.method === 'DELETE' && r[1]) {
        await runs.stop(Number(r[1]));
        return send(res, 200, { stopped: Number(r[1]) });
      }
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
      const body = parseAddDiskRequest(await readBody(req));
      return send(res, 201, await ir.addDisk(name, body.size, body.name));
    }
    if (req.method === 'POST' && m?.[2] === '/migrate') return send(res, 200, await ir.migrate(name, parseMigrateRequest(await readBody(req))));
    return send(res, 404, { code: 'LFB_ERR_USAGE', message: `no route ${req.method} ${url.pathname}` });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof BodyTooLarge) return send(res, 413, { code: 'LFB_ERR_USAGE', message: err.message });
      if (isLifeboatError(err)) return send(res, err.category === 'NotFound' ? 404 : 400, { code: err.code, message: err.message });
      opts.logger?.error(`control API: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      send(res, 500, { code: 'LFB_ERR_INTERNAL', message: String(err) });
    });
  });
  // Bound on 127.0.0.1, so only a local process can connect; one that does so from another local address is refused too.
  server.on('connection', (socket) => {
    if (!LOOPBACK.allows(socket.remoteAddress ?? '')) socket.destroy();
  });
  // After listen, an accept failure (EMFILE) is an 'error' event: without a listener it would end the process.
  server.on('error', (err) => opts.logger?.error(`control API: ${err.message}`));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const info: ControlInfo = { pid: process.pid, port: typeof addr === 'object' && addr ? addr.port : 0, token, ...ports };
  try {
    await writeControlFile(controlFile(repoRoot), JSON.stringify(info));
  } catch (err) {
    await new Promise((r) => server.close(r));
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    info,
    close: () =>
      (closed ??= (async () => {
        const stopped = new Promise((r) => server.close(r));
        server.closeAllConnections(); // a peer still sending a refused body would hold close() up to the request timeout
        await stopped;
        await removeOwnControlFile(controlFile(repoRoot), token);
      })()),
  };
}

/**
 * Writes control.json as 0600 from its first byte (it holds the token) in a
 * 0700 folder, then renames it into place, so the CLI never reads half of it.
 */
async function writeControlFile(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700); // mkdir does not change a folder that exists
  } catch (err) {
    throw fromFsError(err, 'create', dir);
  }
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fromFsError(err, 'write', path);
  }
}

/** Removes control.json only while it is still this server's (another may have started since). */
async function removeOwnControlFile(path: string, token: string): Promise<void> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  let current: Partial<ControlInfo>;
  try {
    current = JSON.parse(text) as Partial<ControlInfo>;
  } catch {
    return; // not ours to judge
  }
  if (current.token === token) await unlink(path).catch(() => undefined);
}

class BodyTooLarge extends Error {
  constructor(max: number) {
    super(`the request body is larger than ${max} bytes`);
  }
}

/**
 * The request body, at most MAX_CONTROL_BODY_BYTES. A body announced or found
 * larger is refused (413) without reading it into memory; what the peer still
 * sends is discarded by the HTTP server (and cut off by its request timeout).
 */
function readBody(req: IncomingMessage, max = MAX_CONTROL_BODY_BYTES): Promise<string> {
  if (Number(req.headers['content-length'] ?? 0) > max) return Promise.reject(new BodyTooLarge(max));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (d: Buffer): void => {
      size += d.length;
      if (size <= max) return void chunks.push(d);
      req.off('data', onData);
      req.resume(); // keep discarding, so the 413 reaches a client still sending
      reject(new BodyTooLarge(max));
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/**
 * A control call that failed before its answer, as the CLI's error: nobody listening on the control file's port
 * (a killed server's file) is LFB_ERR_SERVER_NOT_RUNNING, and the CLI may do the work itself; a server that took
 * the request and cut it, or passed the deadline (`deadlineMs`), or fetch's own 300 s wait for the answer's head,
 * is LFB_ERR_SERVER_NO_ANSWER: the server may still be doing the work, so the CLI must not do it a second time.
 */
export function controlCallError(err: unknown, repoRoot: string, pid: number, call: string, deadlineMs?: number): LifeboatError {
  const cause = (err as { cause?: { code?: string } } | undefined)?.cause;
  if (deadlineMs === undefined && (cause?.code === 'ECONNREFUSED' || cause?.code === 'EADDRNOTAVAIL'))
    return new LifeboatError(
      'LFB_ERR_SERVER_NOT_RUNNING',
      `the Lifeboat server of ${locationText(repoRoot)} (pid ${pid}) does not answer; start it with \`lifeboat serve --repo ${locationText(repoRoot)}\``,
    );
  const why =
    deadlineMs !== undefined
      ? `did not answer ${call} within ${(deadlineMs / 1000).toFixed(1)} s`
      : `gave no answer to ${call} (${cause?.code ?? (err instanceof Error ? err.message : String(err))})`;
  return new LifeboatError('LFB_ERR_SERVER_NO_ANSWER', `the Lifeboat server of ${locationText(repoRoot)} (pid ${pid}) ${why}; see its log, then ask again`);
}

/** CLI side: calls the running server of a repository. */
export async function callControl<T>(repoRoot: string, method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
  let info: ControlInfo;
  try {
    info = JSON.parse(await readFile(controlFile(repoRoot), 'utf8')) as ControlInfo;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES')
      throw new LifeboatError(
        'LFB_ERR_USAGE',
        `${controlFile(repoRoot)} (the server's token) is readable only by the user running \`lifeboat serve\`; run this command as that user`,
      );
    throw new LifeboatError(
      'LFB_ERR_SERVER_NOT_RUNNING',
      `no Lifeboat server is running for ${locationText(repoRoot)}; start one with \`lifeboat serve --repo ${locationText(repoRoot)}\``,
    );
  }
  // A server that accepts and never answers (stopped, hung) fails the call at the deadline instead of holding it.
  const signal = opts.timeoutMs === undefined ? undefined : AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  let json: T & { code?: ErrorCode; message?: string };
  try {
    res = await fetch(`http://127.0.0.1:${info.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${info.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal ? { signal } : {}),
    });
    json = (await res.json()) as T & { code?: ErrorCode; message?: string };
  } catch (err) {
    throw controlCallError(err, repoRoot, info.pid, `${method} ${path}`, signal?.aborted ? opts.timeoutMs : undefined);
  }
  if (!res.ok) throw new LifeboatError(json.code ?? 'LFB_ERR_INTERNAL', json.message ?? `HTTP ${res.status}`);
  return json;
}
