import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LifeboatError, type ErrorCode } from '../core/errors.js';
// The type alone (erased at run time): the CLI's control client loads nothing of the appliance's code.
import type { MemberStat } from '../files/tar-stream.js';
import { controlCallError, controlFile, type ControlInfo } from './control-api.js';
import { parseFilesRequest, type FilesRequest } from './control-requests.js';

export type { FilesRequest };

/** What a copy out of a point is, before its bytes (a tar) come. */
export interface FilesCopyHead {
  readonly pointId: string;
  /** The guest path, `<fs id>:/…`. */
  readonly source: string;
  /** file, directory, symlink… (src/files' FileEntry type). */
  readonly type: string;
  /** The archive's one top entry: the path's last part, or `.` for a file system's root. */
  readonly entry: string;
  /**
   * What the body is: the archive itself (`archive`), or what it is made from
   * as the appliance streams it, which the CLI makes the archive of (src/files'
   * toArchive), so that the work is not that of the server's main thread,
   * which serves the appliance's NBD reads: the folder's tar-out (`tar-out`:
   * names `./…`, no holes) or the file's bytes (`file`, `stat` saying what it is).
   * Absent: `archive`.
   */
  readonly form?: 'archive' | 'tar-out' | 'file';
  /** What the path is (the guest's lstat: mode, owners, size, mtime in s and ns, rdev). */
  readonly stat?: CopyStat;
}

/** What the path is, as the control API carries it: src/files' MemberStat without a symlink's target (that is the copy's body). */
export type CopyStat = Omit<MemberStat, 'target'>;

/** A copy out of a point: its head, then its body (see `form`). */
export interface FilesCopy extends FilesCopyHead {
  readonly stream: Readable;
  /** Resolves when the archive is whole; rejects (LFB_ERR_TOOL_FAILED) when tar failed on the way. */
  readonly done: Promise<void>;
  /** The caller went away: stop reading. */
  cancel(): void;
}

/**
 * File-level recovery through the control API: `lifeboat files ls|get|find`
 * while a server runs for the repository use the server's file session of
 * the point (its appliance boots once), not an appliance of their own. The
 * service (src/service) implements it over its FileSessions. Volumes and
 * entries are src/files' Volume and FileEntry, as JSON.
 */
export interface ControlFiles {
  ls(req: FilesRequest): Promise<{ readonly pointId: string; readonly volumes?: readonly unknown[]; readonly entries?: readonly unknown[] }>;
  find(req: FilesRequest & { readonly name: string }): Promise<{ readonly pointId: string; readonly found: readonly string[] }>;
  copy(req: FilesRequest & { readonly path: string }): Promise<FilesCopy>;
}

/** The header that carries a copy's head (JSON, URI-encoded: guest names are UTF-8). */
const COPY_HEAD = 'x-lifeboat-copy';
/** How long a copy's answer may take to begin: the point's appliance may be booting on a loaded machine (fetch's 300 s before). */
const COPY_HEAD_TIMEOUT_MS = 300_000;

/**
 * POST /files/ls {job, point, path?} · POST /files/find {job, point, path?, name} ·
 * POST /files/copy {job, point, path}: 200 with a tar as the body and its head in the x-lifeboat-copy header.
 * False when the route is not one of these.
 */
export async function handleFilesRoute(
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  files: ControlFiles | undefined,
  readBody: () => Promise<string>,
  send: (status: number, body: unknown) => void,
): Promise<boolean> {
  const m = /^\/files\/(ls|find|copy)$/.exec(pathname);
  if (!m || req.method !== 'POST') return false;
  const route = `POST ${pathname}`;
  if (!files) {
    send(404, { code: 'LFB_ERR_SERVER_NOT_RUNNING', message: 'this server has no file-level recovery sessions' });
    return true;
  }
  const body = parseFilesRequest(route, await readBody());
  if (m[1] === 'ls') {
    send(200, await files.ls(body));
    return true;
  }
  if (m[1] === 'find') {
    if (body.name === undefined) throw new LifeboatError('LFB_ERR_USAGE', `${route}: "name" must be a shell pattern`);
    send(200, await files.find({ ...body, name: body.name }));
    return true;
  }
  if (body.path === undefined) throw new LifeboatError('LFB_ERR_USAGE', `${route}: "path" must be a guest path`);
  // The CLI may go away (Ctrl-C) while the copy is being prepared (an appliance boots): listened for from here,
  // since a close that comes before anyone listens is not heard again.
  let gone = false;
  res.once('close', () => (gone = true));
  const copy = await files.copy({ ...body, path: body.path });
  if (gone || res.destroyed) {
    copy.cancel();
    return true;
  }
  const { pointId, source, type, entry, form, stat } = copy;
  const head: FilesCopyHead = { pointId, source, type, entry, ...(form !== undefined ? { form } : {}), ...(stat !== undefined ? { stat } : {}) };
  res.writeHead(200, { 'content-type': 'application/x-tar', [COPY_HEAD]: encodeURIComponent(JSON.stringify(head)) });
  // The CLI went away (Ctrl-C): the tar stops.
  res.on('close', () => {
    if (!res.writableFinished) copy.cancel();
  });
  copy.stream.pipe(res, { end: false });
  copy.done.then(
    () => res.end(),
    // Too late for a status: a response cut before its last chunk tells the CLI.
    () => res.destroy(),
  );
  return true;
}

async function controlInfo(repoRoot: string): Promise<ControlInfo> {
  try {
    return JSON.parse(await readFile(controlFile(repoRoot), 'utf8')) as ControlInfo;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES')
      throw new LifeboatError(
        'LFB_ERR_USAGE',
        `${controlFile(repoRoot)} (the server's token) is readable only by the user running \`lifeboat serve\`; run this command as that user`,
      );
    throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', `no Lifeboat server is running for ${repoRoot}`);
  }
}

/**
 * CLI side of POST /files/copy: the copy's head and its tar as a stream.
 * LFB_ERR_SERVER_NOT_RUNNING when no server listens (the CLI then reads the point itself), LFB_ERR_SERVER_NO_ANSWER
 * when it took the request and gave no answer.
 */
export async function copyThroughControl(
  repoRoot: string,
  req: FilesRequest & { readonly path: string },
  opts: { readonly headTimeoutMs?: number } = {},
): Promise<FilesCopyHead & { readonly body: Readable }> {
  const headTimeoutMs = opts.headTimeoutMs ?? COPY_HEAD_TIMEOUT_MS;
  const info = await controlInfo(repoRoot);
  // node:http, not fetch: the body is a plain stream of the socket's chunks. Through fetch's web stream a 200 MiB
  // copy cost this process 0.4 s of garbage collection, taken from the appliance that makes the copy (2 cores).
  let res: IncomingMessage;
  let timedOut = false;
  try {
    res = await new Promise<IncomingMessage>((resolve, reject) => {
      const call = request(
        {
          host: '127.0.0.1',
          port: info.port,
          path: '/files/copy',
          method: 'POST',
          headers: { authorization: `Bearer ${info.token}`, 'content-type': 'application/json' },
        },
        (res) => {
          // The head came: the body may pause as long as the appliance takes (the server ends a copy that fails).
          call.setTimeout(0);
          resolve(res);
        },
      );
      call.setTimeout(headTimeoutMs, () => {
        timedOut = true;
        call.destroy(Object.assign(new Error(`no answer's head within ${(headTimeoutMs / 1000).toFixed(1)} s`), { code: 'ETIMEDOUT' }));
      });
      call.on('error', reject);
      call.end(JSON.stringify(req));
    });
  } catch (err) {
    // controlCallError reads fetch's shape (the socket's error as the cause).
    throw controlCallError({ cause: err }, repoRoot, info.pid, 'POST /files/copy', timedOut ? headTimeoutMs : undefined);
  }
  const head = res.headers[COPY_HEAD];
  if (res.statusCode !== 200 || typeof head !== 'string') {
    const text = await readAll(res).catch(() => '');
    let json: { code?: ErrorCode; message?: string } = {};
    try {
      json = JSON.parse(text) as typeof json;
    } catch {
      // Not JSON: the status says what there is to say.
    }
    throw new LifeboatError(json.code ?? 'LFB_ERR_INTERNAL', json.message ?? `HTTP ${res.statusCode}`);
  }
  try {
    return { ...(JSON.parse(decodeURIComponent(head)) as FilesCopyHead), body: res };
  } catch (err) {
    // Nobody will read the body: the connection goes now, or it would keep this process and the server's copy waiting.
    res.destroy();
    throw new LifeboatError('LFB_ERR_INTERNAL', `the server's copy head cannot be read: ${(err as Error).message}`);
  }
}

async function readAll(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) text += chunk as string;
  return text;
}
