/**
 * The whole RPC server as a peer meets it: each input is the byte stream of
 * one TCP connection (record-marked calls to NFS, MOUNT, the portmapper or
 * nothing we serve) played against an RpcServer on loopback (port 0).
 * Findings: a procedure failing with something other than XdrError (the
 * server logs it and answers SYSTEM_ERR), a server fault that is no NfsError,
 * a reply that is not a REPLY record, the connection left open after the
 * client's EOF; for unmutated streams, a call without its reply.
 */
import { connect } from 'node:net';
import type { Logger } from '../../core/log.js';
import { RecordReader, RpcServer } from '../../rpc/index.js';
import type { Rand } from './mutate.js';
import { writeInPieces, type Sample } from './mutate.js';
import { newPrograms, type Programs } from './rpc-targets.js';
import { FuzzFailure, type FuzzTarget, type RunContext, type Verdict } from './target.js';
import { callSample } from './xdr-gen.js';

const MAX_RECORD = 256 * 1024;
/** Inputs between fixture rebuilds (calls may have changed the file system or the portmapper table). */
const REBUILD_EVERY = 32;

/** One to four calls, each a record of one or two fragments. */
function stream(r: Rand): Sample {
  const parts: Buffer[] = [];
  const lengths: number[] = [];
  let at = 0;
  const fragment = (body: Buffer, last: boolean, inner: readonly number[]): void => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(((last ? 0x80000000 : 0) | body.length) >>> 0);
    lengths.push(at, ...inner.map((o) => at + 4 + o));
    parts.push(h, body);
    at += 4 + body.length;
  };
  for (let n = r.range(1, 4); n > 0; n--) {
    const { data, lengths: inner } = callSample(r);
    const cut = r.chance(0.2) ? r.int(data.length + 1) : data.length;
    if (cut < data.length) {
      fragment(
        data.subarray(0, cut),
        false,
        inner.filter((o) => o + 4 <= cut),
      );
      fragment(
        data.subarray(cut),
        true,
        inner.filter((o) => o >= cut).map((o) => o - cut),
      );
    } else fragment(data, true, inner);
  }
  return { data: Buffer.concat(parts), lengths };
}

/** Records and xids of a stream, parsed whole (for unmutated streams: the calls that must be answered). */
function callXids(input: Buffer): number[] {
  return new RecordReader(MAX_RECORD).feed(input).map((rec) => rec.readUInt32BE(0));
}

export function rpcServerTarget(opts: { closeWithinMs?: number } = {}): FuzzTarget {
  const closeWithinMs = opts.closeWithinMs ?? 5000;
  const errors: string[] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg, f) => errors.push(`${msg} ${JSON.stringify(f)}`),
  };
  let server: RpcServer | undefined;
  let programs: Programs | undefined;
  let port = 0;
  let runs = 0;

  const install = async (): Promise<void> => {
    programs = await newPrograms();
    for (const p of programs.byNumber.values()) server!.register(p);
  };

  /** Sends the input; for an unmutated stream waits for `replies` answers before ending. */
  const play = (input: Buffer, replies: number): Promise<{ output: Buffer; closed: boolean }> =>
    new Promise((resolve) => {
      const c = connect(port, '127.0.0.1');
      const got: Buffer[] = [];
      const counter = new RecordReader(64 * 1024 * 1024);
      let answered = 0;
      let ended = false;
      const end = (): void => {
        if (ended) return;
        ended = true;
        c.end();
        timer.refresh();
      };
      c.on('data', (d: Buffer) => {
        got.push(d);
        answered += counter.feed(d).length;
        if (answered >= replies) end();
      });
      c.on('error', () => undefined);
      const timer = setTimeout(() => {
        if (!ended) return end();
        c.destroy();
        resolve({ output: Buffer.concat(got), closed: false });
      }, closeWithinMs);
      c.on('close', () => {
        clearTimeout(timer);
        resolve({ output: Buffer.concat(got), closed: true });
      });
      writeInPieces(c, input);
      if (replies === 0) end();
    });

  return {
    name: 'rpc-server',
    weight: 5,
    generate: stream,
    async start() {
      server = new RpcServer({ logger, maxRecordBytes: MAX_RECORD });
      await install();
      port = await server.listen(0, '127.0.0.1');
    },
    async stop() {
      await server?.close();
      server = undefined;
    },
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      if (!server || !programs) throw new Error('rpc-server target used before start()');
      if (++runs % REBUILD_EVERY === 0) await install();
      errors.length = 0;
      programs.faults.length = 0;
      programs.violations.length = 0;
      const expected = ctx.valid ? callXids(input) : [];
      const { output, closed } = await play(input, expected.length);
      if (errors.length > 0) throw new FuzzFailure('exception', `the server logged: ${errors[0]}`);
      if (programs.faults.length > 0)
        throw new FuzzFailure('exception', `an internal error was answered as a server fault: ${String(programs.faults[0])}`, programs.faults[0]);
      if (programs.violations.length > 0) throw new FuzzFailure('oracle', programs.violations[0]!);
      if (!closed) throw new FuzzFailure('hang', `the connection stayed open ${closeWithinMs} ms after the client's EOF`);
      let replies: Buffer[];
      try {
        replies = new RecordReader(64 * 1024 * 1024).feed(output);
      } catch (err) {
        throw new FuzzFailure('oracle', `the server's replies are not record-marked: ${String(err)}`, err);
      }
      for (const rec of replies) {
        if (rec.length < 12 || rec.readUInt32BE(4) !== 1)
          throw new FuzzFailure('oracle', `a reply record that is no REPLY: ${rec.subarray(0, 16).toString('hex')}`);
      }
      if (ctx.valid) {
        const xids = replies.map((rec) => rec.readUInt32BE(0)).sort();
        if (xids.join() !== [...expected].sort().join()) throw new FuzzFailure('oracle', `${expected.length} calls, replies for xids ${xids.join(',')}`);
      }
      return replies.length > 0 ? 'accepted' : 'rejected';
    },
  };
}
