/**
 * The console's only way to the server: the public /api/v1 API with the
 * login cookie. A change (any method but GET) also sends the session's CSRF
 * token, which login and GET /me give; the cookie itself is HttpOnly, so no
 * script in the page can read it.
 */

const BASE = '/api/v1';
const CSRF_HEADER = 'X-CSRF-Token';

/** A refusal or failure of the API: its HTTP status and the `{code, message}` it answered. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | undefined;
/** Who is told when a request comes back 401 (the session ended): the session module sends the user to the login page. */
let onUnauthenticated: (() => void) | undefined;

export function setCsrfToken(token: string | undefined): void {
  csrfToken = token;
}

export function setUnauthenticatedHandler(handler: (() => void) | undefined): void {
  onUnauthenticated = handler;
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = 'LFB_ERR_HTTP';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string') code = body.code;
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON (a proxy's page): the status says what happened.
  }
  return new ApiError(res.status, code, message);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken !== undefined) headers[CSRF_HEADER] = csrfToken;
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: 'same-origin',
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new ApiError(0, 'LFB_ERR_NETWORK', `the server did not answer (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    // A login that fails is the login page's business; anything else that is 401 means the session is gone.
    if (res.status === 401 && path !== '/login') onUnauthenticated?.();
    throw err;
  }
  // Read to the end even when empty (204): an answer left unread is reported as an aborted request.
  const text = await res.text();
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

export const api = {
  get: <T>(path: string): Promise<T> => request<T>('GET', path),
  post: <T>(path: string, body?: unknown): Promise<T> => request<T>('POST', path, body ?? {}),
  patch: <T>(path: string, body: unknown): Promise<T> => request<T>('PATCH', path, body),
  del: <T>(path: string): Promise<T> => request<T>('DELETE', path),
};

/** A query string from the defined values (arrays repeat the parameter), with its leading `?`; empty when nothing is set. */
export function query(params: Record<string, string | number | boolean | readonly (string | number)[] | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v as readonly (string | number)[]) q.append(k, String(item));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

/** A path segment: names are safe already, but a value the user typed is encoded. */
export const seg = (s: string | number): string => encodeURIComponent(String(s));

/**
 * Follows a Server-Sent Events route: each named event's JSON data goes to
 * its handler. Returns the function that closes the stream. The browser
 * reconnects a dropped stream by itself; a stream the server ended (after
 * `end`) is closed here so it is not reopened.
 */
export function events(path: string, handlers: Record<string, (data: unknown) => void>): () => void {
  const source = new EventSource(BASE + path, { withCredentials: true });
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => {
      const data = (e as MessageEvent<string>).data;
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch {
        return;
      }
      handle(parsed);
      if (name === 'end') source.close();
    });
  }
  if (!('end' in handlers)) source.addEventListener('end', () => source.close());
  return () => source.close();
}
