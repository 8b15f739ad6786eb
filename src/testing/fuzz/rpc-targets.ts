/**
 * Fuzz targets for the ONC RPC stack: record marking, call-header decoding,
 * and the argument decoders of every NFSv3, MOUNT and portmapper procedure,
 * called as RpcServer calls them (an XdrReader over the bytes, a reply
 * writer), against fresh fixtures.
 */
import { isLifeboatError } from '../../core/errors.js';
import { NfsError, mountProgram, nfsProgram, type NfsFileSystem } from '../../nfs/index.js';
import * as recordMarking from '../../rpc/record-marking.js';
import * as rpcMessage from '../../rpc/rpc-message.js';
import { portmapProgram, type CallContext, type RpcProgram } from '../../rpc/index.js';
import { XdrError, XdrReader, XdrWriter } from '../../rpc/xdr.js';
import { nfsFixture, portmapFixture } from './fixtures.js';
import { Rand, inputSeed, type Sample } from './mutate.js';
import { FuzzFailure, errorClassesOf, isOneOf, unexpected, type FuzzTarget, type RunContext, type Verdict } from './target.js';
import { MOUNT_PROCEDURE_NAMES, NFS_PROCEDURE_NAMES, PMAP_PROCEDURE_NAMES, PROGRAM_ARGS, callSample, procedureSample } from './xdr-gen.js';

const RECORD_ERRORS = errorClassesOf(recordMarking);
const CALL_ERRORS = [XdrError, ...errorClassesOf(rpcMessage)];
/** The record cap the record-marking target runs with: small, so "too large" is reached often. */
export const FUZZ_MAX_RECORD = 64 * 1024;
const LAST = 0x80000000;
/** Above this many fragments in one record, a reader may refuse the stream as a flood. */
const FLOOD_FRAGMENTS = 64;

/** The records a stream holds, parsed in one piece: the reference the chunked RecordReader must agree with. */
function referenceRecords(input: Buffer, max: number): { records: Buffer[]; tooLarge: boolean; mostFragments: number } {
  const records: Buffer[] = [];
  let frags: Buffer[] = [];
  let size = 0;
  let mostFragments = 0;
  for (let at = 0; at + 4 <= input.length;) {
    const word = input.readUInt32BE(at);
    const len = word & 0x7fffffff;
    if (size + len > max) return { records, tooLarge: true, mostFragments };
    if (at + 4 + len > input.length) break;
    frags.push(input.subarray(at + 4, at + 4 + len));
    mostFragments = Math.max(mostFragments, frags.length);
    size += len;
    at += 4 + len;
    if ((word & LAST) !== 0) {
      records.push(Buffer.concat(frags));
      frags = [];
      size = 0;
    }
  }
  return { records, tooLarge: false, mostFragments };
}

function recordStream(r: Rand): Sample {
  const parts: Buffer[] = [];
  const lengths: number[] = [];
  let at = 0;
  const fragment = (body: Buffer, last: boolean): void => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(((last ? LAST : 0) | body.length) >>> 0);
    lengths.push(at);
    parts.push(h, body);
    at += 4 + body.length;
  };
  if (r.chance(0.002)) {
    // A flood: many empty or 1-byte fragments of one record (issue 12, item 5).
    const one = r.chance(0.5);
    for (let n = r.range(20_000, one ? 40_000 : 60_000); n > 0; n--) fragment(one ? Buffer.from([0x55]) : Buffer.alloc(0), false);
    return { data: Buffer.concat(parts), lengths: lengths.slice(0, 64) };
  }
  for (let records = r.range(1, 3); records > 0; records--) {
    const size = r.chance(0.1) ? r.pick([8192, FUZZ_MAX_RECORD - 1, FUZZ_MAX_RECORD]) : r.pick([0, 1, 4, 40, 100, 1000]);
    const body = size > 4096 ? Buffer.alloc(size, r.int(256)) : r.bytes(size);
    const cuts = [0, ...Array.from({ length: r.int(4) }, () => r.int(size + 1)).sort((a, b) => a - b), size];
    for (let i = 1; i < cuts.length; i++) fragment(body.subarray(cuts[i - 1]!, cuts[i]!), i === cuts.length - 1);
  }
  return { data: Buffer.concat(parts), lengths };
}

function heldMemory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** RecordReader fed the stream in chunks split where the input's own hash says; checked against the reference parse. */
export function recordMarkingTarget(): FuzzTarget {
  return {
    name: 'record-marking',
    weight: 20,
    generate: recordStream,
    label: (input) => (input.length > 80_000 ? 'flood' : 'stream'),
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      const ref = referenceRecords(input, FUZZ_MAX_RECORD);
      const flood = ref.mostFragments > 10_000;
      if (flood) ctx.gc();
      const before = flood ? heldMemory() : 0;
      const reader = new recordMarking.RecordReader(FUZZ_MAX_RECORD);
      const split = new Rand(inputSeed(input));
      const got: Buffer[] = [];
      let refused: unknown;
      try {
        // As RpcServer reads: chunks pushed as they come, records taken only while calls may start (here: a random few).
        for (let at = 0; at < input.length;) {
          const n = split.chance(0.3) ? split.range(1, 7) : split.range(8, 70_000);
          reader.push(input.subarray(at, at + n));
          at += n;
          for (let take = split.int(3); take > 0; take--) {
            const record = reader.next();
            if (record === undefined) break;
            got.push(record);
          }
        }
        for (let record = reader.next(); record !== undefined; record = reader.next()) got.push(record);
      } catch (err) {
        if (!isOneOf(err, RECORD_ERRORS)) throw unexpected(err, 'RecordReader');
        refused = err;
      }
      if (flood) {
        // Measured without collecting again: a peak that garbage makes look bigger is still a peak the peer caused.
        const grown = heldMemory() - before;
        if (grown > 8 * input.length + 2 * 1024 * 1024) {
          throw new FuzzFailure('memory', `${input.length} bytes of fragments (${ref.mostFragments} in one record) made the reader hold ${grown} bytes`);
        }
      }
      got.forEach((rec, i) => {
        if (rec.length > FUZZ_MAX_RECORD) throw new FuzzFailure('oracle', `delivered a record of ${rec.length} bytes, over the ${FUZZ_MAX_RECORD} cap`);
        if (!ref.records[i]?.equals(rec)) throw new FuzzFailure('oracle', `record ${i} differs from the stream's record ${i}`);
      });
      if (refused !== undefined) {
        if (ctx.valid && ref.mostFragments <= FLOOD_FRAGMENTS) throw new FuzzFailure('oracle', `a valid stream was refused: ${String(refused)}`);
        return 'rejected';
      }
      if (got.length !== ref.records.length) throw new FuzzFailure('oracle', `${got.length} records delivered, the stream holds ${ref.records.length}`);
      if (ref.tooLarge) throw new FuzzFailure('oracle', `a fragment past the ${FUZZ_MAX_RECORD}-byte record cap was not refused`);
      if (reader.heldBytes > input.length + FUZZ_MAX_RECORD) throw new FuzzFailure('oracle', `reader holds ${reader.heldBytes} bytes after ${input.length}`);
      return 'accepted';
    },
  };
}

const SERVED_VERSION = new Map([
  [100003, 3],
  [100005, 3],
  [100000, 2],
]);
const NFS_STATUSES = new Set([
  0, 1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71, 10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008,
]);
const CALL_CONTEXT: CallContext = {
  cred: { flavor: 'sys', stamp: 1, machineName: 'fuzz', uid: 0, gid: 0, gids: [] },
  remoteAddress: '127.0.0.1',
  remotePort: 700,
};

export interface Programs {
  readonly byNumber: Map<number, RpcProgram>;
  /** Server faults that are not NfsErrors or LifeboatErrors (internal errors answered as SERVERFAULT). */
  readonly faults: unknown[];
  /** Contracts the fixtures saw broken (set-id bits passed on, a disk asked for bytes outside it). */
  readonly violations: string[];
  /** A procedure that may change the fixtures ran: the next input gets new ones. */
  dirty: boolean;
}

/** Procedures that can change the fixtures, by program: the others leave them as built. */
const MUTATING = new Map<number, ReadonlySet<number>>([
  [100003, new Set([2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 21])],
  [100000, new Set([1, 2])],
]);

let cached: Programs | undefined;

/** The three programs over the fixtures, rebuilt whenever the last input may have changed them. */
async function programs(): Promise<Programs> {
  if (cached && !cached.dirty) return cached;
  cached = await newPrograms();
  return cached;
}

/** NFS, MOUNT and the portmapper over new fixtures. */
export async function newPrograms(): Promise<Programs> {
  const faults: unknown[] = [];
  const violations: string[] = [];
  const fs: NfsFileSystem = await nfsFixture(violations);
  const onServerError = (err: unknown): void => {
    if (!(err instanceof NfsError) && !isLifeboatError(err)) faults.push(err);
  };
  const list = [nfsProgram(fs, { onServerError }), mountProgram(fs), portmapProgram(portmapFixture())];
  return { byNumber: new Map(list.map((p) => [p.prog, p])), faults, violations, dirty: false };
}

/** Calls one procedure as RpcServer does; XdrError is GARBAGE_ARGS, any other escape is a finding. */
export async function callProcedure(programs: Programs, prog: number, vers: number, proc: number, args: XdrReader, valid: boolean): Promise<Verdict> {
  const program = programs.byNumber.get(prog);
  const handler = program?.versions.get(vers)?.get(proc);
  if (!program || !handler) return 'rejected'; // PROG_UNAVAIL, PROG_MISMATCH or PROC_UNAVAIL
  const faults = programs.faults;
  faults.length = 0;
  programs.violations.length = 0;
  if (MUTATING.get(prog)?.has(proc)) programs.dirty = true;
  const out = new XdrWriter();
  const what = `${program.name} v${vers} procedure ${proc}`;
  try {
    await handler(args, out, CALL_CONTEXT);
  } catch (err) {
    if (!(err instanceof XdrError)) throw unexpected(err, what);
    if (valid) throw new FuzzFailure('oracle', `${what}: valid arguments answered GARBAGE_ARGS (${err.message})`, err);
    return 'rejected';
  }
  if (faults.length > 0) throw new FuzzFailure('exception', `${what}: an internal error was answered as a server fault: ${String(faults[0])}`, faults[0]);
  if (programs.violations.length > 0) throw new FuzzFailure('oracle', `${what}: ${programs.violations.splice(0)[0]}`);
  if (out.length % 4 !== 0) throw new FuzzFailure('oracle', `${what}: reply of ${out.length} bytes is not XDR-aligned`);
  if (program.prog === 100003 && proc !== 0) {
    const status = out.toBuffer().readUInt32BE(0);
    if (!NFS_STATUSES.has(status)) throw new FuzzFailure('oracle', `${what}: reply status ${status} is no nfsstat3`);
  }
  return 'accepted';
}

/** One program's procedures: the input is the procedure number then its arguments. */
function programTarget(name: string, prog: number, vers: number, names: readonly string[], weight: number): FuzzTarget {
  const args = PROGRAM_ARGS.get(prog)!;
  return {
    name,
    weight,
    generate: (r) => procedureSample(args, r),
    label: (input) => (input.length < 4 ? 'short' : (names[input.readUInt32BE(0)] ?? 'unknown')),
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      if (input.length < 4) return 'rejected';
      return callProcedure(await programs(), prog, vers, input.readUInt32BE(0), new XdrReader(input, 4), ctx.valid);
    },
  };
}

export const nfsTarget = (): FuzzTarget => programTarget('nfs', 100003, 3, NFS_PROCEDURE_NAMES, 30);
export const mountTarget = (): FuzzTarget => programTarget('mount', 100005, 3, MOUNT_PROCEDURE_NAMES, 7);
export const portmapTarget = (): FuzzTarget => programTarget('portmap', 100000, 2, PMAP_PROCEDURE_NAMES, 7);

/** A whole CALL record: decodeCall, then dispatch to the program it names, as RpcServer.handle does. */
export function rpcCallTarget(): FuzzTarget {
  return {
    name: 'rpc-call',
    weight: 16,
    generate: callSample,
    label: (input) => (input.length < 16 ? 'short' : ({ 100000: 'portmap', 100003: 'nfs', 100005: 'mount' }[input.readUInt32BE(12)] ?? 'other')),
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      let call: rpcMessage.RpcCall;
      try {
        call = rpcMessage.decodeCall(input);
      } catch (err) {
        if (!isOneOf(err, CALL_ERRORS)) throw unexpected(err, 'decodeCall');
        if (ctx.valid) throw new FuzzFailure('oracle', `a valid CALL was refused: ${String(err)}`, err);
        return 'rejected';
      }
      const words = [0, 8, 12, 16, 20].map((o) => input.readUInt32BE(o));
      if (call.xid !== words[0] || call.rpcvers !== words[1] || call.prog !== words[2] || call.vers !== words[3] || call.proc !== words[4]) {
        throw new FuzzFailure('oracle', 'decodeCall returned header fields that are not the record');
      }
      if (call.args.offset > input.length) throw new FuzzFailure('oracle', 'arguments start past the end of the record');
      if (call.cred.flavor === 'sys' && (call.cred.gids.length > 16 || Buffer.byteLength(call.cred.machineName) > 255 * 3)) {
        throw new FuzzFailure('oracle', 'AUTH_SYS credentials beyond RFC 5531 limits');
      }
      if (call.rpcvers !== 2) return 'rejected';
      const served = SERVED_VERSION.get(call.prog);
      return callProcedure(await programs(), call.prog, call.vers, call.proc, call.args, ctx.valid && call.vers === served);
    },
  };
}
