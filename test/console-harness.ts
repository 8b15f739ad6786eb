/**
 * What the console's browser tests share: a real `lifeboat serve` (plain
 * HTTP on loopback) with a repository and the users admin, operator and
 * viewer made through the real CLI, and one headless Chromium (Debian's,
 * driven by puppeteer-core). Every page it opens collects console errors,
 * uncaught page errors, failed requests, answers >= 400 the test did not
 * expect, requests to another origin (every asset comes from the server: no
 * CDN) and API calls outside the public /api/v1; a test asserts there were
 * none (assertClean). Screenshots go to test-output/console/<name>.png.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type HTTPResponse, type Page } from 'puppeteer-core';
import { cli, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

export type Role = 'admin' | 'operator' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer'];
/** Each user's password: its role's name and a fixed phrase (the test server lives for one file). */
export const passwordOf = (role: Role): string => `${role} console horse staple`;

export const CHROMIUM = process.env['LIFEBOAT_CHROMIUM'] ?? '/usr/bin/chromium';
export const SCREENSHOTS = fileURLToPath(new URL('../../test-output/console/', import.meta.url));

/** An answer >= 400 a test expects (a wrong password's 401): method and a path the URL contains, and its status. */
export interface Expected {
  method: string;
  path: string | RegExp;
  status: number;
}

/**
 * Answers every page may get without anything being wrong: the shell's
 * session check (GET /me) says 401 when nobody is logged in, which is how
 * the console knows to show the login page.
 */
const ALWAYS_EXPECTED: readonly Expected[] = [{ method: 'GET', path: /\/api\/v1\/me$/, status: 401 }];

interface Watch {
  problems: string[];
  expected: Expected[];
}

export interface Console {
  /** The console's URL (the server's origin, `/`). */
  url: string;
  /** The API's base URL (…/api/v1). */
  api: string;
  repo: string;
  /** The repository's name in the API's URLs. */
  repoName: string;
  dir: string;
  server: Server;
  browser: Browser;
  /** A new page (1280×900 unless told) in a browser context of its own (its own cookies), watched for errors. */
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  /** Opens the console on `page` and logs in as `role` through the login form; resolves once the shell shows. */
  login(page: Page, role: Role): Promise<void>;
  /** Marks an answer >= 400 on `page` as expected (once per call: a second such answer is a problem again). */
  expect(page: Page, e: Expected): void;
  /** What went wrong on the page so far: console errors, page errors, failed requests, unexpected answers. */
  problems(page: Page): readonly string[];
  /** Fails the test if anything went wrong on the page. */
  assertClean(page: Page): void;
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

function matches(e: Expected, method: string, url: string, status: number): boolean {
  const path = new URL(url).pathname;
  return e.method === method && e.status === status && (typeof e.path === 'string' ? path.includes(e.path) : e.path.test(path));
}

/** A request the page ended itself: an event stream it closed when the view changed. */
function selfAborted(url: string, errorText: string | undefined): boolean {
  return errorText === 'net::ERR_ABORTED' && new URL(url).pathname.endsWith('/events');
}

/** Kinds of request a page makes to the API: each must go to the public API (…/api/v1/…). */
const API_REQUESTS = new Set(['fetch', 'xhr', 'eventsource', 'websocket']);

function watch(page: Page, w: Watch, origin: string): void {
  // Every asset comes from the server itself (no CDN), and the page calls only the public API.
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return;
    if (u.origin !== origin) w.problems.push(`request to another origin: ${r.method()} ${r.url()}`);
    else if (API_REQUESTS.has(r.resourceType()) && !u.pathname.startsWith('/api/v1/'))
      w.problems.push(`a call outside the public API: ${r.method()} ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium logs every answer >= 400 as a console error too: those are judged by their answer below.
    if (/^Failed to load resource: the server responded with a status of \d+/.test(m.text())) return;
    w.problems.push(`console error: ${m.text()} (${m.location().url ?? ''})`);
  });
  page.on('pageerror', (err) => w.problems.push(`page error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));
  page.on('requestfailed', (r) => {
    const text = r.failure()?.errorText;
    if (selfAborted(r.url(), text)) return;
    w.problems.push(`request failed: ${r.method()} ${r.url()}: ${text ?? '?'}`);
  });
  page.on('response', (res: HTTPResponse) => {
    const status = res.status();
    if (status < 400) return;
    const method = res.request().method();
    const url = res.url();
    if (ALWAYS_EXPECTED.some((e) => matches(e, method, url, status))) return;
    const i = w.expected.findIndex((e) => matches(e, method, url, status));
    if (i >= 0) w.expected.splice(i, 1);
    else w.problems.push(`unexpected answer: ${method} ${url}: ${status}`);
  });
}

/** `lifeboat user add` with the password on standard input. */
async function addUser(stateDir: string, role: Role): Promise<void> {
  const r = await cli(['user', 'add', role, '--role', role, '--state-dir', stateDir, '--password-stdin'], {}, `${passwordOf(role)}\n`);
  assert.equal(r.code, 0, `user add ${role}: ${r.stdout}${r.stderr}`);
}

/**
 * A server and a browser for one test file. `serverArgs` go to `lifeboat
 * serve` (startServer adds the ports, the state folder and --no-tls).
 * `repo` puts the repository (and the server's state beside it) in a
 * folder of the test's (a small file system it mounted; the test removes
 * it), not in the harness's temporary folder. `beforeServe` runs once the
 * repository and its users exist and before the server starts (a backup
 * the CLI makes then is its own, not handed to the server: its clock may be
 * pinned with LIFEBOAT_NOW); it gets the repository and the harness's
 * temporary folder.
 * Call close() in an after hook: it stops both however the tests ended.
 */
export async function startConsole(
  opts: { serverArgs?: string[]; repo?: string; beforeServe?: (repo: string, dir: string) => Promise<void> } = {},
): Promise<Console> {
  const tmp = await tempDir('lifeboat-console-');
  const repo = opts.repo ?? join(tmp.dir, 'repo');
  let server: Server | undefined;
  let browser: Browser | undefined;
  const close = async (): Promise<void> => {
    await browser?.close().catch(() => undefined);
    if (server && server.proc.exitCode === null && server.proc.signalCode === null) await kill9(server);
    await tmp.cleanup();
  };
  try {
    const init = await cli(['repo', 'init', repo]);
    assert.equal(init.code, 0, init.stderr);
    for (const role of ROLES) await addUser(`${repo}.state`, role);
    await opts.beforeServe?.(repo, tmp.dir);
    server = await startServer(repo, ['--no-portmap', ...(opts.serverArgs ?? [])]);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root cannot use Chromium's sandbox; the browser only ever sees this test's server.
      args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--mute-audio'],
    });
  } catch (err) {
    await close();
    throw err;
  }
  const srv = server;
  const b = browser;
  const api = srv.httpUrl;
  const url = `${api.replace(/\/api\/v1\/?$/, '')}/`;
  const watches = new WeakMap<Page, Watch>();
  const watchOf = (page: Page): Watch => {
    const w = watches.get(page);
    if (!w) throw new Error('a page the console harness did not open');
    return w;
  };
  return {
    url,
    api,
    repo,
    // The API names a repository by its folder's base name.
    repoName: basename(repo),
    dir: tmp.dir,
    server: srv,
    browser: b,
    async newPage(viewport = { width: 1280, height: 900 }) {
      // A context of its own: each page has its own cookies, so pages logged in as different roles do not mix.
      const context = await b.createBrowserContext();
      const page = await context.newPage();
      await page.setViewport(viewport);
      const w: Watch = { problems: [], expected: [] };
      watches.set(page, w);
      watch(page, w, new URL(url).origin);
      page.setDefaultTimeout(20_000);
      return page;
    },
    async login(page, role) {
      await page.goto(url, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('input[name=username]');
      await page.type('input[name=username]', role);
      await page.type('input[name=password]', passwordOf(role));
      await Promise.all([page.waitForSelector('header.top nav'), page.click('form button[type=submit]')]);
    },
    expect(page, e) {
      watchOf(page).expected.push(e);
    },
    problems: (page) => watchOf(page).problems,
    assertClean(page) {
      assert.deepEqual(watchOf(page).problems, [], 'the page had errors');
    },
    async screenshot(page, name) {
      await mkdir(SCREENSHOTS, { recursive: true });
      const path = join(SCREENSHOTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close,
  };
}

/** The hash paths routes.tsx declares (`/jobs/:repo/:job`), read from its source: the list a viewer's walk covers. */
/** GETs a path of the API (…/api/v1<path>) from the page, with its login cookie. */
export async function apiGet<T>(page: Page, path: string): Promise<T> {
  return page.evaluate(async (p) => {
    const r = await fetch(`/api/v1${p}`, { credentials: 'same-origin' });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<unknown>;
  }, path) as Promise<T>;
}

export async function consoleRoutes(): Promise<string[]> {
  const text = await readFile(fileURLToPath(new URL('../../web/src/routes.tsx', import.meta.url)), 'utf8');
  return [...text.matchAll(/\{\s*path:\s*'([^']+)'/g)].map((m) => m[1]!);
}
