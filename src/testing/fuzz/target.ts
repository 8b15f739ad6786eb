/**
 * What a fuzz target is, and what counts as a finding. A target turns bytes
 * into one call of the code under test and says whether the input was
 * accepted (decoded, answered) or rejected the way the protocol prescribes
 * (XdrError, a record-marking or protocol error, an RPC error reply). Anything
 * else is a finding: another exception type, a broken invariant, a hang,
 * memory that a peer's bytes made the process hold.
 */
import type { Rand, Sample } from './mutate.js';

export type Verdict = 'accepted' | 'rejected';

export const FINDING_KINDS = ['exception', 'oracle', 'hang', 'memory', 'uncaught-exception', 'unhandled-rejection', 'process-exit'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** Thrown by a target (or the harness) for anything that is not a decoded value or a prescribed rejection. */
export class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
  constructor(
    readonly kind: FindingKind,
    message: string,
    /** The error that escaped, when there is one: its stack says where the fault is. */
    readonly fault?: unknown,
  ) {
    super(message);
  }
}

export interface RunContext {
  /** The input is a generated message, unmutated: rejecting it is itself a finding. */
  readonly valid: boolean;
  /** Full garbage collection (for targets that measure what an input makes the process hold). */
  readonly gc: () => void;
}

export interface FuzzTarget {
  readonly name: string;
  /** Relative share of the inputs. */
  readonly weight: number;
  /** A valid message, with its length fields marked for the mutators. */
  generate(r: Rand): Sample;
  /** Runs one input against fresh state, so every finding replays from its bytes alone. */
  run(input: Buffer, ctx: RunContext): Promise<Verdict>;
  /** What part of the target an input exercises (e.g. the procedure), for coverage counts. */
  label?(input: Buffer): string;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Every Error subclass a module exports: the protocol errors a decoder may
 * throw on bad input. Read from the module itself, so an error class the
 * module adds later is accepted without touching the fuzzer.
 */
export function errorClassesOf(module: object): ErrorClass[] {
  return Object.values(module).filter((v): v is ErrorClass => typeof v === 'function' && v.prototype instanceof Error);
}

export function isOneOf(err: unknown, classes: readonly ErrorClass[]): boolean {
  return classes.some((c) => err instanceof c);
}

/** The escaped error as a finding of kind 'exception' (a FuzzFailure passes through). */
export function unexpected(err: unknown, doing: string): FuzzFailure {
  if (err instanceof FuzzFailure) return err;
  const what = err instanceof Error ? `${err.name}: ${err.message}` : `non-Error ${String(err)}`;
  return new FuzzFailure('exception', `${doing} threw ${what}`, err);
}
