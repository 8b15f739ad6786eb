/**
 * A tiny checker that the lab's probes run inside the lab's network namespace
 * (`ip netns exec <ns> node netns-check.js …`): a process of the host's
 * namespace cannot connect to a lab address. Prints one JSON line
 * `{"ok":boolean,"detail":string}` and exits 0 when ok, 1 otherwise.
 *
 *   netns-check.js tcp <host> <port> <timeoutMs>
 *   netns-check.js http <url> <timeoutMs> <minStatus> <maxStatus>
 *
 * Both retry until their deadline while nothing answers (a service starts
 * after the guest's network). Only node:* imports: it runs as a script.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';

const RETRY_MS = 250;
const FIRST_BYTES = 120;

interface Outcome {
  readonly ok: boolean;
  readonly detail: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tcpOnce(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(`no answer within ${timeoutMs} ms`);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(undefined);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

async function tcp(host: string, port: number, timeoutMs: number): Promise<Outcome> {
  const start = performance.now();
  let attempts = 0;
  for (;;) {
    attempts++;
    const left = Math.max(1, timeoutMs - (performance.now() - start));
    const err = await tcpOnce(host, port, Math.min(left, 3_000));
    const ms = Math.round(performance.now() - start);
    if (err === undefined) return { ok: true, detail: `connected to ${host}:${port} in ${ms} ms` };
    if (performance.now() - start + RETRY_MS >= timeoutMs) return { ok: false, detail: `${host}:${port}: ${err} (${attempts} attempts in ${ms} ms)` };
    await sleep(RETRY_MS);
  }
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]+/g, ' ').trim();
}

/** One GET: the status line and the body's first bytes, or the error. */
function httpOnce(url: URL, timeoutMs: number): Promise<{ status?: number; text: string }> {
  return new Promise((resolve) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'GET',
      // A lab VM's certificate is its own (often self-signed): the probe checks that the service answers, not who signed it.
      rejectUnauthorized: false,
      headers: { 'user-agent': 'lifeboat-surebackup' },
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ text: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    req.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ text: e.code ?? e.message });
    });
    req.once('response', (res: IncomingMessage) => {
      let body = Buffer.alloc(0);
      const finish = (): void => {
        clearTimeout(timer);
        res.destroy();
        const first = printable(body.subarray(0, FIRST_BYTES).toString('utf8'));
        resolve({
          status: res.statusCode ?? 0,
          text: `HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim() + (first ? `: ${JSON.stringify(first)}` : ''),
        });
      };
      res.on('data', (d: Buffer) => {
        body = Buffer.concat([body, d]);
        if (body.length >= FIRST_BYTES) finish();
      });
      res.once('end', finish);
      res.once('error', finish);
    });
    req.end();
  });
}

async function http(url: URL, timeoutMs: number, min: number, max: number): Promise<Outcome> {
  const start = performance.now();
  for (;;) {
    const left = Math.max(1, timeoutMs - (performance.now() - start));
    const r = await httpOnce(url, Math.min(left, 10_000));
    if (r.status !== undefined && r.status >= min && r.status <= max) return { ok: true, detail: r.text };
    // An answer outside the range is final, except the statuses of a server or proxy still starting.
    const retry = r.status === undefined || r.status === 502 || r.status === 503 || r.status === 504;
    const expected = min === max ? `${min}` : `${min}..${max}`;
    if (!retry || performance.now() - start + RETRY_MS >= timeoutMs) return { ok: false, detail: `${r.text} (expected ${expected})` };
    await sleep(RETRY_MS);
  }
}

async function main(argv: string[]): Promise<Outcome> {
  const [kind, ...rest] = argv;
  if (kind === 'tcp' && rest.length === 3) return tcp(rest[0]!, Number(rest[1]), Number(rest[2]));
  if (kind === 'http' && rest.length === 4) return http(new URL(rest[0]!), Number(rest[1]), Number(rest[2]), Number(rest[3]));
  return { ok: false, detail: `netns-check: bad arguments ${JSON.stringify(argv)}` };
}

main(process.argv.slice(2)).then(
  (o) => {
    process.stdout.write(`${JSON.stringify(o)}\n`);
    process.exitCode = o.ok ? 0 : 1;
  },
  (e: unknown) => {
    process.stdout.write(`${JSON.stringify({ ok: false, detail: `netns-check: ${e instanceof Error ? e.message : String(e)}` })}\n`);
    process.exitCode = 1;
  },
);
