/**
 * The fuzz loop: seeded generation and mutation, one input at a time against
 * weighted targets, with a watchdog for hangs, process-wide traps for
 * uncaught exceptions, unhandled rejections and process.exit, heap sampling
 * (a bound, and no growth trend over the run), and for each distinct finding
 * a shrunk input that still reproduces it on its own.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Rand, mutate } from './mutate.js';
import { FuzzFailure, unexpected, type FindingKind, type FuzzTarget, type RunContext, type Verdict } from './target.js';

export interface FuzzOptions {
  readonly seed: number;
  readonly iterations: number;
  readonly targets: readonly FuzzTarget[];
  /** Share of inputs run as generated, unmutated (they must be accepted or rejected for a stated reason). */
  readonly validShare?: number;
  /** An input still running after this long is a hang. */
  readonly hangMs?: number;
  /** Heap in use above this is a finding. */
  readonly heapLimitBytes?: number;
  /** Shrink each finding's input (replays it up to a few hundred times). */
  readonly minimize?: boolean;
  readonly progress?: (line: string) => void;
}

export interface TargetStats {
  inputs: number;
  valid: number;
  accepted: number;
  rejected: number;
  failed: number;
  readonly labels: Record<string, number>;
}

export interface Finding {
  /** The target whose input shows it ('unattributed' for an escape no suspect replays). */
  target: string;
  readonly kind: FindingKind;
  readonly message: string;
  /** The first frame of the code under test (not the fuzzer) in the fault's stack. */
  readonly where: string;
  readonly signature: string;
  input: Buffer;
  /** The input was a generated message, unmutated. */
  readonly valid: boolean;
  readonly iteration: number;
  occurrences: number;
  /** Replayed alone from `input`, the same finding came back. */
  reproduced: boolean;
  /** For escapes seen between inputs: the inputs that ran just before, any of which may be at fault. */
  readonly suspects: readonly { readonly target: string; readonly input: Buffer }[];
}

export interface FuzzReport {
  readonly seed: number;
  readonly iterations: number;
  readonly seconds: number;
  readonly inputsPerSecond: number;
  readonly targets: Record<string, TargetStats>;
  readonly findings: Finding[];
  /** Largest heap in use seen at a sample point (before collection). */
  readonly peakHeapBytes: number;
  /** Heap plus Buffer memory after a full collection, at each sample point. */
  readonly retainedSamples: number[];
  readonly peakRssBytes: number;
}

const MiB = 1024 * 1024;

/** A full collection, with or without --expose-gc on the command line. */
export function fullGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const SRC_FRAME = /((?:dist\/)?src\/(?!testing\/fuzz\/)[^\s():]+:\d+):\d+/;

/** Where the fault is: the first stack frame in src/ outside the fuzzer. */
export function faultSite(err: unknown): string {
  const stack = err instanceof FuzzFailure && err.fault instanceof Error ? err.fault.stack : err instanceof Error ? err.stack : undefined;
  for (const line of (stack ?? '').split('\n').slice(1)) {
    const m = SRC_FRAME.exec(line);
    if (m) return m[1]!;
  }
  return 'unknown';
}

function describe(doing: string, err: unknown): Pick<Finding, 'kind' | 'message' | 'where' | 'signature'> {
  const failure = unexpected(err, doing);
  const where = faultSite(failure);
  const shape = failure.fault instanceof Error ? failure.fault.name : failure.message.replace(/\d+/g, 'N');
  return { kind: failure.kind, message: failure.message, where, signature: `${failure.kind}|${shape}|${where}` };
}

type Escape = { kind: FindingKind; error: unknown };

function escapeFailure(e: Escape): FuzzFailure {
  return new FuzzFailure(e.kind, `${e.kind}: ${e.error instanceof Error ? e.error.message : String(e.error)}`, e.error);
}

type Outcome = { verdict: Verdict } | { error: unknown };

/** Runs inputs with a watchdog and process-wide traps; one instance per fuzz run. */
class Runner {
  escapes: Escape[] = [];
  private abort: ((e: FuzzFailure) => void) | undefined;
  private startedAt = 0;
  private readonly restore: (() => void)[] = [];

  constructor(private readonly hangMs: number) {}

  install(): void {
    const onUncaught = (error: unknown): void => void this.escapes.push({ kind: 'uncaught-exception', error });
    const onRejection = (error: unknown): void => void this.escapes.push({ kind: 'unhandled-rejection', error });
    // While fuzzing the harness is the only listener (a test runner's would fail the run instead of reporting the input).
    for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
      const others = process.listeners(event);
      process.removeAllListeners(event);
      this.restore.push(() => others.forEach((l) => process.on(event, l as (...args: unknown[]) => void)));
    }
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onRejection);
    const realExit = process.exit;
    process.exit = ((code?: number | string | null) => {
      const error = new FuzzFailure('process-exit', `process.exit(${String(code)}) called`);
      this.escapes.push({ kind: 'process-exit', error });
      throw error;
    }) as typeof process.exit;
    // Not unref'd: an input stuck on a promise that nothing will settle must not let the event loop end the process.
    const watchdog = setInterval(
      () => {
        if (this.abort && Date.now() - this.startedAt > this.hangMs) this.abort(new FuzzFailure('hang', `no answer after ${this.hangMs} ms`));
      },
      Math.min(1000, this.hangMs / 4),
    );
    this.restore.push(
      () => process.off('uncaughtException', onUncaught),
      () => process.off('unhandledRejection', onRejection),
      () => (process.exit = realExit),
      () => clearInterval(watchdog),
    );
  }

  uninstall(): void {
    for (const f of this.restore.splice(0).reverse()) f();
  }

  async run(target: FuzzTarget, input: Buffer, ctx: RunContext): Promise<Outcome> {
    this.startedAt = Date.now();
    const aborted = new Promise<never>((_, reject) => (this.abort = reject));
    try {
      return { verdict: await Promise.race([target.run(input, ctx), aborted]) };
    } catch (error) {
      return { error };
    } finally {
      this.abort = undefined;
    }
  }

  /** One input alone, escapes included: the signature of its finding, or undefined if it passes. */
  async replay(target: FuzzTarget, input: Buffer, ctx: RunContext): Promise<string | undefined> {
    this.escapes = [];
    const outcome = await this.run(target, input, ctx);
    await new Promise((r) => setTimeout(r, 5));
    if ('error' in outcome) return describe(target.name, outcome.error).signature;
    const escape = this.escapes[0];
    return escape ? describe(target.name, escapeFailure(escape)).signature : undefined;
  }
}

/** Shrinks by deleting ever smaller chunks while the same finding reproduces. */
async function shrink(runner: Runner, target: FuzzTarget, input: Buffer, signature: string, ctx: RunContext, budget: number): Promise<Buffer> {
  let best = input;
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && budget > 0; chunk = chunk === 1 ? 0 : Math.max(1, chunk >> 1)) {
    for (let at = 0; at < best.length && budget > 0; budget--) {
      const candidate = Buffer.concat([best.subarray(0, at), best.subarray(at + chunk)]);
      if ((await runner.replay(target, candidate, ctx)) === signature) best = candidate;
      else at += chunk;
    }
  }
  return best;
}

function newStats(): TargetStats {
  return { inputs: 0, valid: 0, accepted: 0, rejected: 0, failed: 0, labels: {} };
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  process.setSourceMapsEnabled(true);
  const gc = fullGc();
  const r = new Rand(opts.seed);
  const validShare = opts.validShare ?? 0.1;
  const heapLimit = opts.heapLimitBytes ?? 384 * MiB;
  const sampleEvery = Math.max(1000, Math.floor(opts.iterations / 200));
  const totalWeight = opts.targets.reduce((n, t) => n + t.weight, 0);
  const stats: Record<string, TargetStats> = Object.fromEntries(opts.targets.map((t) => [t.name, newStats()]));
  const byName = new Map(opts.targets.map((t) => [t.name, t]));
  const findings = new Map<string, Finding>();
  const recent: { target: string; input: Buffer }[] = [];
  const retainedSamples: number[] = [];
  let peakHeap = 0;
  const runner = new Runner(opts.hangMs ?? 10_000);

  const record = (target: string, err: unknown, input: Buffer, valid: boolean, iteration: number, suspects: Finding['suspects'] = []): void => {
    const d = describe(target, err);
    const key = `${target}|${d.signature}`;
    const seen = findings.get(key);
    if (seen) {
      seen.occurrences += 1;
      if (input.length < seen.input.length && suspects.length === 0) seen.input = input;
    } else findings.set(key, { ...d, target, input, valid, iteration, occurrences: 1, reproduced: false, suspects });
  };
  const pick = (): FuzzTarget => {
    let x = r.float() * totalWeight;
    for (const t of opts.targets) if ((x -= t.weight) < 0) return t;
    return opts.targets[opts.targets.length - 1]!;
  };

  for (const t of opts.targets) await t.start?.();
  runner.install();
  const started = Date.now();
  try {
    for (let i = 0; i < opts.iterations; i++) {
      const target = pick();
      const sample = target.generate(r);
      const valid = r.chance(validShare);
      const input = valid ? sample.data : mutate(sample, r, () => target.generate(r));
      const s = stats[target.name]!;
      s.inputs += 1;
      if (valid) s.valid += 1;
      const label = target.label?.(input);
      if (label !== undefined) s.labels[label] = (s.labels[label] ?? 0) + 1;
      recent.push({ target: target.name, input });
      if (recent.length > 8) recent.shift();
      const outcome = await runner.run(target, input, { valid, gc });
      // A turn of the event loop, so a rejection left unhandled by this input is reported now, next to it.
      await new Promise((resolve) => setImmediate(resolve));
      if ('verdict' in outcome) s[outcome.verdict] += 1;
      else {
        s.failed += 1;
        record(target.name, outcome.error, input, valid, i);
      }
      for (const e of runner.escapes.splice(0)) {
        // Escapes surface between inputs: the culprit is among the last few.
        record('unattributed', escapeFailure(e), input, false, i, [...recent]);
      }
      if ((i + 1) % sampleEvery === 0) {
        const before = process.memoryUsage();
        peakHeap = Math.max(peakHeap, before.heapUsed);
        if (before.heapUsed > heapLimit)
          record('all', new FuzzFailure('memory', `heap in use ${before.heapUsed} bytes, over the ${heapLimit}-byte bound`), Buffer.alloc(0), false, i);
        gc();
        const after = process.memoryUsage();
        retainedSamples.push(after.heapUsed + after.arrayBuffers);
      }
      if (opts.progress && (i + 1) % Math.max(1, Math.floor(opts.iterations / 10)) === 0) {
        const secs = (Date.now() - started) / 1000;
        opts.progress(
          `${i + 1} inputs, ${Math.round((i + 1) / secs)}/s, ${findings.size} findings, heap ${Math.round(process.memoryUsage().heapUsed / MiB)} MiB`,
        );
      }
    }
  } finally {
    runner.uninstall();
  }
  const seconds = (Date.now() - started) / 1000;

  // No growth trend: what survives a full collection at the end is about what survived early on.
  const n = retainedSamples.length;
  if (n >= 10) {
    const q = Math.max(2, Math.floor(n / 5));
    const warm = Math.floor(n / 10);
    const early = Math.min(...retainedSamples.slice(warm, warm + q));
    const late = Math.min(...retainedSamples.slice(n - q));
    if (late - early > Math.max(24 * MiB, early / 2)) {
      record(
        'all',
        new FuzzFailure('memory', `memory held after collection grew from ${early} to ${late} bytes over the run`),
        Buffer.alloc(0),
        false,
        opts.iterations,
      );
    }
  }

  // Replay each finding alone, from its suspects for escapes, then shrink it.
  runner.install();
  try {
    for (const f of findings.values()) {
      const ctx = { valid: f.valid, gc };
      for (const candidate of f.suspects.length > 0 ? [...f.suspects].reverse() : [{ target: f.target, input: f.input }]) {
        const target = byName.get(candidate.target);
        if (target && (await runner.replay(target, candidate.input, ctx)) === f.signature) {
          f.reproduced = true;
          f.target = target.name;
          f.input = candidate.input;
          break;
        }
      }
      const target = byName.get(f.target);
      if (target && f.reproduced && opts.minimize !== false && f.kind !== 'hang') f.input = await shrink(runner, target, f.input, f.signature, ctx, 400);
    }
  } finally {
    runner.uninstall();
    for (const t of opts.targets) await t.stop?.();
  }
  return {
    seed: opts.seed,
    iterations: opts.iterations,
    seconds,
    inputsPerSecond: opts.iterations / seconds,
    targets: stats,
    findings: [...findings.values()],
    peakHeapBytes: peakHeap,
    retainedSamples,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}
