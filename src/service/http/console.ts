/**
 * The web console's files (dist/console, built from web/ by
 * scripts/build-console.mjs) served at `/` from the API's own port, and the
 * security headers every answer carries, the API's included.
 *
 * The console is a page of the same origin as the API, so the policy can be
 * strict: scripts, styles and connections only from this origin, no inline
 * script or style, no framing (clickjacking), no referrer. Files with a hash
 * in their name never change and are cached for good; index.html is asked
 * again each time so a new build is seen at once. A .br or .gz beside a file
 * is sent to a client that takes it (preCompressed).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { ApiServer } from './api.js';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The built console beside the compiled server: dist/src/service/http → dist/console. */
export const CONSOLE_ROOT = fileURLToPath(new URL('../../../console/', import.meta.url));

const HASHED = /-[A-Z0-9]{8}\.(js|css)(\.br|\.gz)?$/;

export function securityHeaders(https: boolean): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    ...(https ? { 'strict-transport-security': 'max-age=31536000' } : {}),
  };
}

/**
 * Call before any other hook or route: the headers are set on the raw
 * response when the request arrives, so every answer has them, including
 * refusals of the authentication hook, 404s and hijacked event streams.
 */
export async function serveConsole(app: ApiServer, opts: { https: boolean; root?: string }): Promise<void> {
  const headers = Object.entries(securityHeaders(opts.https));
  app.addHook('onRequest', async (_request, reply) => {
    for (const [name, value] of headers) reply.raw.setHeader(name, value);
  });
  const root = opts.root ?? CONSOLE_ROOT;
  // A server built without the console (tsc alone) still serves the API; `/` is then the API's 404.
  if (!existsSync(root)) return;
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    preCompressed: true,
    index: ['index.html'],
    // Not in the OpenAPI document: these are files, not the API.
    schemaHide: true,
    cacheControl: false,
    setHeaders: (res, path) => {
      res.setHeader('cache-control', HASHED.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
}
