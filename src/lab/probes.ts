import { open, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { StringDecoder } from 'node:string_decoder';
import { LifeboatError } from '../core/errors.js';
import { guestPing } from './guest-agent.js';
import type { LabNetwork, LabTestResult } from './types.js';

/**
 * The tests of a lab VM. Each returns a LabTestResult and never throws for a
 * failing check (only for a caller's mistake, such as an invalid regex); each
 * ends by its deadline. The network probes run inside the lab's namespace
 * through `exec` (LabNetwork.exec, or a test's own).
 */
export type LabExec = LabNetwork['exec'];

/** The compiled checker beside this file (dist/src/lab/netns-check.js), run by node inside the namespace. */
export const NETNS_CHECK = fileURLToPath(new URL('./netns-check.js', import.meta.url));

const SERIAL_TAIL = 300;
const SERIAL_POLL_MS = 200;
/** Bytes of the serial log read at once. */
const SERIAL_CHUNK = 1 << 20;
/** Text kept between pieces: longer than any line a pattern could need to span. */
const SERIAL_WINDOW = 65_536;
const QGA_RETRY_MS = 500;
/** Time for node to start inside the namespace, on top of the checker's own deadline. */
const CHECKER_SLACK_MS = 5_000;

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Console output made readable in one line of a report: escape sequences, carriage returns and other control bytes go. */
export function cleanConsoleText(s: string): string {
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]/g, '')
      .replace(/\r/g, '')
      .replace(/^\n+|\n+$/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x09\x0b-\x1f\x7f]+/g, ' ')
      .replace(/\n+/g, ' | ')
      .replace(/ {2,}/g, ' ')
      .trim()
  );
}

async function tailOf(path: string, bytes: number): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const from = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - from);
      await fh.read(buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (e) {
    return `(serial log ${path}: ${(e as NodeJS.ErrnoException).code ?? errText(e)})`;
  }
}

export interface HeartbeatOptions {
  /** The guest agent's chardev socket; tried first and all along. */
  readonly qgaSocket?: string;
  readonly serialLog: string;
  /** Regex on the serial console meaning "booted", for guests without an agent. */
  readonly serialPattern?: string;
  readonly timeoutMs: number;
  /** Stops waiting early (the result then fails saying so). */
  readonly signal?: AbortSignal;
}

/**
 * Waits until the guest shows it runs: its guest agent answers `guest-ping`,
 * or (when `serialPattern` is given) the serial log matches. Both are tried at
 * once; the first wins. The agent starts late in a boot, and until then QEMU's
 * chardev accepts connections and drops what is written: hence a sync retried
 * until the deadline.
 */
export async function heartbeat(opts: HeartbeatOptions): Promise<LabTestResult> {
  let pattern: RegExp | undefined;
  if (opts.serialPattern !== undefined) {
    try {
      pattern = new RegExp(opts.serialPattern);
    } catch (e) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `invalid serial pattern ${JSON.stringify(opts.serialPattern)}: ${errText(e)}`);
    }
  }
  const start = performance.now();
  const deadline = start + opts.timeoutMs;
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  if (opts.signal?.aborted) stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let qgaError = 'no guest agent socket';
  const result = (ok: boolean, detail: string): LabTestResult => ({ name: 'heartbeat', ok, detail, ms: Math.round(performance.now() - start) });

  const viaAgent = async (socket: string): Promise<string | undefined> => {
    while (!stop.signal.aborted && performance.now() < deadline) {
      try {
        // One connection for the rest of the time: the sync inside is resent every second until the agent answers.
        await guestPing(socket, Math.max(1, deadline - performance.now()), stop.signal);
        return 'guest agent answered guest-ping';
      } catch (e) {
        qgaError = errText(e);
      }
      await sleep(Math.min(QGA_RETRY_MS, Math.max(0, deadline - performance.now())), stop.signal);
    }
    return undefined;
  };

  const viaSerial = async (re: RegExp): Promise<string | undefined> => {
    let offset = 0;
    let text = '';
    const decoder = new StringDecoder('utf8');
    const buf = Buffer.alloc(SERIAL_CHUNK);
    while (!stop.signal.aborted) {
      try {
        const { size } = await stat(opts.serialLog);
        // A log that shrank was started again: read it from the start.
        if (size < offset) [offset, text] = [0, ''];
        if (size > offset) {
          const fh = await open(opts.serialLog, 'r');
          try {
            // Piece by piece: a guest flooding its console must not make this process hold the whole log.
            while (offset < size && !stop.signal.aborted) {
              const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - offset), offset);
              if (bytesRead === 0) break;
              offset += bytesRead;
              // The pattern is tried on the whole new piece before the window is cut to what a line could span.
              text += decoder.write(buf.subarray(0, bytesRead));
              const m = re.exec(text);
              if (m) {
                const lineStart = text.lastIndexOf('\n', m.index) + 1;
                const lineEnd = text.indexOf('\n', m.index + m[0].length);
                const line = cleanConsoleText(text.slice(lineStart, lineEnd < 0 ? undefined : lineEnd)).slice(0, 160);
                return `serial console matched /${re.source}/: ${JSON.stringify(line)}`;
              }
              text = text.slice(-SERIAL_WINDOW);
            }
          } finally {
            await fh.close();
          }
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (performance.now() >= deadline) return undefined;
      await sleep(Math.min(SERIAL_POLL_MS, Math.max(0, deadline - performance.now())), stop.signal);
    }
    return undefined;
  };

  try {
    const tries: Promise<string | undefined>[] = [];
    if (opts.qgaSocket) tries.push(viaAgent(opts.qgaSocket));
    if (pattern) tries.push(viaSerial(pattern));
    if (tries.length === 0) return result(false, 'no way to see a heartbeat: neither a guest agent socket nor a serial pattern');
    const winner = await new Promise<string | undefined>((resolve, reject) => {
      let left = tries.length;
      for (const t of tries)
        t.then((v) => {
          if (v !== undefined) resolve(v);
          else if (--left === 0) resolve(undefined);
        }, reject);
    });
    stop.abort();
    if (winner !== undefined) return result(true, winner);
    const why = [
      opts.signal?.aborted ? 'stopped before a heartbeat' : `no heartbeat within ${(opts.timeoutMs / 1000).toFixed(1)} s`,
      opts.qgaSocket ? `guest agent: ${qgaError}` : undefined,
      pattern ? `serial console never matched /${pattern.source}/` : undefined,
    ].filter(Boolean);
    return result(false, `${why.join('; ')}; serial log ends: ${JSON.stringify(cleanConsoleText(await tailOf(opts.serialLog, SERIAL_TAIL)))}`);
  } catch (e) {
    stop.abort();
    return result(false, `heartbeat check failed: ${errText(e)}`);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** The last `n` non-empty lines of a command's output, for a report. */
function lastLines(text: string, n: number, maxChars = 400): string {
  const lines = text
    .split('\n')
    .map((l) => cleanConsoleText(l))
    .filter((l) => l !== '');
  return lines.slice(-n).join(' | ').slice(-maxChars);
}

/** `ping -c 1 -W 1` from inside the lab, repeated until a reply or the deadline (a guest's network comes up after its heartbeat). */
export async function pingProbe(exec: LabExec, ip: string, timeoutMs: number): Promise<LabTestResult> {
  const start = performance.now();
  const result = (ok: boolean, detail: string): LabTestResult => ({ name: 'ping', ok, detail, ms: Math.round(performance.now() - start) });
  let attempts = 0;
  let last: string;
  for (;;) {
    const round = performance.now();
    attempts++;
    try {
      const r = await exec('ping', ['-n', '-c', '1', '-W', '1', ip], { timeoutMs: 5_000 });
      if (r.code === 0) {
        const rtt = /time=([\d.]+ ?ms)/.exec(r.stdout)?.[1];
        return result(true, `reply from ${ip}${rtt ? ` in ${rtt}` : ''}${attempts > 1 ? ` (attempt ${attempts})` : ''}`);
      }
      last = lastLines(`${r.stdout}\n${r.stderr}`, 2) || `ping exited ${r.code}`;
    } catch (e) {
      last = errText(e);
    }
    const left = start + timeoutMs - performance.now();
    if (left <= 0) return result(false, `no reply from ${ip} within ${(timeoutMs / 1000).toFixed(1)} s (${attempts} attempts): ${last}`);
    // An unreachable network fails at once: pace the attempts at about one a second.
    await sleep(Math.min(left, Math.max(0, 1_000 - (performance.now() - round))));
  }
}

async function runChecker(exec: LabExec, name: string, args: string[], timeoutMs: number, start: number): Promise<LabTestResult> {
  const result = (ok: boolean, detail: string): LabTestResult => ({ name, ok, detail, ms: Math.round(performance.now() - start) });
  try {
    const r = await exec(process.execPath, [NETNS_CHECK, ...args], { timeoutMs: timeoutMs + CHECKER_SLACK_MS });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      const o = JSON.parse(line) as { ok?: unknown; detail?: unknown };
      if (typeof o.ok === 'boolean' && typeof o.detail === 'string') return result(o.ok, o.detail);
    } catch {
      // Not the checker's line: report what came instead.
    }
    return result(false, `the checker gave no answer (exit ${r.code}): ${lastLines(`${r.stdout}\n${r.stderr}`, 3)}`);
  } catch (e) {
    return result(false, `cannot run the checker in the lab: ${errText(e)}`);
  }
}

/** A TCP connection to ip:port from inside the lab, retried until the deadline. Name `tcp:<port>`. */
export function tcpProbe(exec: LabExec, ip: string, port: number, timeoutMs: number): Promise<LabTestResult> {
  return runChecker(exec, `tcp:${port}`, ['tcp', ip, String(port), String(timeoutMs)], timeoutMs, performance.now());
}

/**
 * An HTTP(S) GET from inside the lab; ok when the status is `expectStatus`
 * (one status or an inclusive range, by default 200..399). The detail gives the
 * status and the body's first bytes. Name `http:<url>`.
 */
export function httpProbe(
  exec: LabExec,
  url: string,
  timeoutMs: number,
  expectStatus: number | readonly [number, number] = [200, 399],
): Promise<LabTestResult> {
  const [min, max] = typeof expectStatus === 'number' ? [expectStatus, expectStatus] : expectStatus;
  return runChecker(exec, `http:${url}`, ['http', url, String(timeoutMs), String(min), String(max)], timeoutMs, performance.now());
}

export interface ScriptEnv {
  readonly VM_NAME: string;
  readonly VM_IP: string;
  readonly POINT_ID: string;
}

/** Runs a custom test script inside the lab with VM_NAME, VM_IP and POINT_ID; ok iff it exits 0. Name `script:<file>`. */
export async function scriptProbe(exec: LabExec, file: string, env: ScriptEnv, timeoutMs: number): Promise<LabTestResult> {
  const start = performance.now();
  const result = (ok: boolean, detail: string): LabTestResult => ({ name: `script:${file}`, ok, detail, ms: Math.round(performance.now() - start) });
  try {
    // PATH too, in case the exec replaces the environment rather than adding to it.
    const r = await exec(file, [], {
      env: { PATH: process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      timeoutMs,
    });
    const out = lastLines(`${r.stdout}\n${r.stderr}`, 5);
    if (r.code === 0) return result(true, out || 'exit 0');
    const how = r.code === null ? `did not finish within ${(timeoutMs / 1000).toFixed(1)} s` : `exit ${r.code}`;
    return result(false, out ? `${how}: ${out}` : how);
  } catch (e) {
    return result(false, `cannot run ${file} in the lab: ${errText(e)}`);
  }
}
