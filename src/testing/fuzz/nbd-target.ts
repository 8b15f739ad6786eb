/**
 * Fuzz target for the NBD server: each input is everything a client sends on
 * one connection (client flags, options, then commands), played against an
 * NbdServer over a small in-memory export through a unix socket in a
 * temporary folder (the server takes connections only from a listener; a
 * unix socket needs no port).
 * Findings: the connection not closing after the client's EOF (hang), the
 * device asked for bytes outside the disk, an error logged for a request the
 * device did not fail, a greeting that is not NBD, plus whatever the harness
 * sees escape (uncaught exceptions, unhandled rejections).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../core/log.js';
import { NbdServer, type NbdExports } from '../../nbd/index.js';
import * as W from '../../nbd/wire.js';
import { CheckedDisk } from './checked-disk.js';
import { checkValidSession } from './nbd-replies.js';
import type { Rand } from './mutate.js';
import { writeInPieces, type Sample } from './mutate.js';
import { FuzzFailure, type FuzzTarget, type RunContext, type Verdict } from './target.js';

const DISK_BYTES = 1024 * 1024;
const OUTPUT_CAP = 64 * 1024 * 1024;
const EXPORTS = [
  { name: 'disk0', description: 'fuzz disk' },
  { name: 's/disk1', description: '' },
];

/** What one connection did to the server's collaborators. */
interface Observed {
  violations: string[];
  errors: string[];
  opened: number;
}

function optionHeader(opt: number, length: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(W.IHAVEOPT, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(length >>> 0, 12);
  return h;
}

/** Builds the client's byte stream, remembering where each length field went. */
class Stream {
  private readonly parts: Buffer[] = [];
  private at = 0;
  readonly lengths: number[] = [];

  push(b: Buffer, lengthAt?: number): this {
    if (lengthAt !== undefined) this.lengths.push(this.at + lengthAt);
    this.parts.push(b);
    this.at += b.length;
    return this;
  }

  u32(v: number, isLength = false): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.push(b, isLength ? 0 : undefined);
  }

  option(opt: number, data: Buffer, dataLengths: readonly number[] = []): this {
    this.push(optionHeader(opt, data.length), 12);
    for (const o of dataLengths) this.lengths.push(this.at + o);
    return this.push(data);
  }

  sample(): Sample {
    return { data: Buffer.concat(this.parts), lengths: this.lengths };
  }
}

function nameAndInfos(name: string, infos: readonly number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((x, i) => b.writeUInt16BE(x, 6 + n.length + 2 * i));
  return b;
}

function metaQuery(name: string, queries: readonly string[]): { data: Buffer; lengths: number[] } {
  const parts: Buffer[] = [];
  const lengths: number[] = [0, 4 + Buffer.byteLength(name)];
  let at = 8 + Buffer.byteLength(name);
  const head = Buffer.alloc(8 + Buffer.byteLength(name));
  head.writeUInt32BE(Buffer.byteLength(name), 0);
  head.write(name, 4);
  head.writeUInt32BE(queries.length, 4 + Buffer.byteLength(name));
  parts.push(head);
  for (const q of queries) {
    const l = Buffer.alloc(4);
    l.writeUInt32BE(Buffer.byteLength(q));
    lengths.push(at);
    parts.push(l, Buffer.from(q));
    at += 4 + Buffer.byteLength(q);
  }
  return { data: Buffer.concat(parts), lengths };
}

function command(s: Stream, r: Rand): void {
  const type = r.pick([
    W.NBD_CMD_READ,
    W.NBD_CMD_READ,
    W.NBD_CMD_WRITE,
    W.NBD_CMD_WRITE,
    W.NBD_CMD_FLUSH,
    W.NBD_CMD_TRIM,
    W.NBD_CMD_CACHE,
    W.NBD_CMD_WRITE_ZEROES,
    W.NBD_CMD_BLOCK_STATUS,
    9,
  ]);
  const length = type === W.NBD_CMD_WRITE ? r.pick([0, 1, 512, 4096]) : r.pick([0, 1, 512, 65536, DISK_BYTES]);
  const offset = r.pick([0, 512, 4096, DISK_BYTES - 512, DISK_BYTES - length, DISK_BYTES]);
  const h = Buffer.alloc(28);
  h.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
  h.writeUInt16BE(r.pick([0, W.NBD_CMD_FLAG_FUA, W.NBD_CMD_FLAG_REQ_ONE]), 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(r.u32(), 8);
  h.writeBigUInt64BE(BigInt(Math.max(0, offset)), 16);
  h.writeUInt32BE(length, 24);
  s.push(h, 24);
  if (type === W.NBD_CMD_WRITE) s.push(r.bytes(length));
}

/** A plausible session: flags, some options, GO or EXPORT_NAME (or ABORT), then commands and usually DISC. */
function session(r: Rand): Sample {
  const s = new Stream();
  s.u32(r.pick([W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES, W.NBD_FLAG_C_FIXED_NEWSTYLE, 0]));
  const name = r.pick(['disk0', 's/disk1', '', 'nope']);
  for (let n = r.int(4); n > 0; n--) {
    const opt = r.pick([W.NBD_OPT_LIST, W.NBD_OPT_STRUCTURED_REPLY, W.NBD_OPT_INFO, W.NBD_OPT_LIST_META_CONTEXT, W.NBD_OPT_SET_META_CONTEXT, 4, 99]);
    if (opt === W.NBD_OPT_INFO) s.option(opt, nameAndInfos(name, [W.NBD_INFO_BLOCK_SIZE, W.NBD_INFO_NAME]), [0]);
    else if (opt === W.NBD_OPT_LIST_META_CONTEXT || opt === W.NBD_OPT_SET_META_CONTEXT) {
      const q = metaQuery(name, r.pick([[], [W.BASE_ALLOCATION], ['base:', 'qemu:dirty-bitmap:x']]));
      s.option(opt, q.data, q.lengths);
    } else s.option(opt, opt === 99 ? r.bytes(r.int(16)) : Buffer.alloc(0));
  }
  const end = r.float();
  if (end < 0.05) return s.option(W.NBD_OPT_ABORT, Buffer.alloc(0)).sample();
  if (end < 0.25) s.option(W.NBD_OPT_EXPORT_NAME, Buffer.from(r.pick(['disk0', 's/disk1'])));
  else s.option(W.NBD_OPT_GO, nameAndInfos(r.pick(['disk0', 's/disk1']), r.pick([[], [W.NBD_INFO_BLOCK_SIZE]])), [0]);
  for (let n = r.int(7); n > 0; n--) command(s, r);
  if (r.chance(0.7)) {
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
    disc.writeUInt16BE(W.NBD_CMD_DISC, 6);
    s.push(disc);
  }
  return s.sample();
}

const GREETING = Buffer.alloc(16);
GREETING.writeBigUInt64BE(W.NBDMAGIC, 0);
GREETING.writeBigUInt64BE(W.IHAVEOPT, 8);

/** One NbdServer on 127.0.0.1 for the whole run; each input is one connection. */
export function nbdTarget(opts: { closeWithinMs?: number } = {}): FuzzTarget {
  const closeWithinMs = opts.closeWithinMs ?? 5000;
  let observed: Observed = { violations: [], errors: [], opened: 0 };
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg) => observed.errors.push(msg),
  };
  const exports: NbdExports = {
    list: () => EXPORTS,
    open: (name) => {
      if (!EXPORTS.some((e) => e.name === name)) return undefined;
      observed.opened += 1;
      return new CheckedDisk(DISK_BYTES, observed.violations);
    },
  };
  let server: NbdServer | undefined;
  let dir: string | undefined;

  /** Plays the input as one client; collects what the server sent (the first 64 MiB). */
  const play = (input: Buffer): Promise<{ output: Buffer; closed: boolean }> =>
    new Promise((resolve) => {
      const c = connect(join(dir!, 'nbd.sock'));
      const got: Buffer[] = [];
      let bytes = 0;
      c.on('data', (d: Buffer) => {
        if (bytes < OUTPUT_CAP) got.push(d);
        bytes += d.length;
      });
      c.on('error', () => undefined);
      const timer = setTimeout(() => {
        c.destroy();
        resolve({ output: Buffer.concat(got), closed: false });
      }, closeWithinMs);
      c.on('close', () => {
        clearTimeout(timer);
        resolve({ output: Buffer.concat(got), closed: true });
      });
      writeInPieces(c, input);
      c.end();
    });

  return {
    name: 'nbd',
    weight: 8,
    generate: session,
    label: (input) => (input.length >= 28 && input.indexOf(Buffer.from([0x25, 0x60, 0x95, 0x13])) >= 0 ? 'commands' : 'handshake'),
    async start() {
      dir = await mkdtemp(join(tmpdir(), 'lifeboat-fuzz-nbd-'));
      server = new NbdServer({ exports, logger });
      await server.listenUnix(join(dir, 'nbd.sock'));
    },
    async stop() {
      await server?.close();
      server = undefined;
      if (dir) await rm(dir, { recursive: true, force: true });
      dir = undefined;
    },
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      if (!server) throw new Error('nbd target used before start()');
      observed = { violations: [], errors: [], opened: 0 };
      const seen = observed;
      const { output, closed } = await play(input);
      const greeting = output.subarray(0, GREETING.length);
      if (!closed) throw new FuzzFailure('hang', `the server kept the connection open ${closeWithinMs} ms after the client's EOF`);
      if (seen.violations.length > 0) throw new FuzzFailure('oracle', `the server asked the disk for ${seen.violations[0]}`);
      if (seen.errors.length > 0) throw new FuzzFailure('oracle', `the server logged an error for a disk that never failed: ${seen.errors[0]}`);
      if (!greeting.equals(GREETING)) throw new FuzzFailure('oracle', `greeting ${greeting.toString('hex')} is not NBDMAGIC IHAVEOPT`);
      const violation = ctx.valid ? checkValidSession(input, output) : undefined;
      if (violation) throw new FuzzFailure('oracle', `a well-formed session: ${violation}`);
      return seen.opened > 0 ? 'accepted' : 'rejected';
    },
  };
}
