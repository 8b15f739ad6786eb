/**
 * Generators of valid XDR messages: RPC call headers (AUTH_NONE, AUTH_SYS,
 * other flavors) and the arguments of every NFSv3 (RFC 1813 §3.3), MOUNT v3
 * (Appendix I) and portmapper v2 (RFC 1833) procedure. Values lean on the
 * edges (names of 255 and 256 bytes, offsets at 2^53, handles of 56 and 57
 * bytes) while staying valid, so the mutators start from something the
 * decoders accept.
 */
import { MAX_AUTH_BYTES, AUTH_NONE, AUTH_SYS } from '../../rpc/index.js';
import { XdrWriter } from '../../rpc/xdr.js';
import { FIXTURE_NAMES, FIXTURE_NODE_IDS, EXPORT_PATH, fixtureHandle } from './fixtures.js';
import type { Rand, Sample } from './mutate.js';

/** An XdrWriter that remembers where each opaque/string length field went. */
export class TracingWriter extends XdrWriter {
  readonly lengths: number[] = [];

  override opaque(data: Buffer): this {
    this.lengths.push(this.length);
    return super.opaque(data);
  }

  /** A u32 that counts something (an array, a byte count): a target for the length mutator. */
  count(v: number): this {
    this.lengths.push(this.length);
    return this.u32(v);
  }

  sample(keep = 0): Sample {
    return { data: this.toBuffer(), lengths: this.lengths, keep, aligned: true };
  }
}

/** The file system the arguments are for: its handles and names. */
export interface NfsArgEnv {
  /** A handle of the file system, most of the time. */
  handle(r: Rand): Buffer;
  readonly names: readonly string[];
}

/** Handles and names of the in-memory fixture (fixtures.ts). */
export const MEMORY_ENV: NfsArgEnv = {
  handle(r) {
    const x = r.float();
    if (x < 0.85) return fixtureHandle(r.pick(FIXTURE_NODE_IDS));
    if (x < 0.9) return Buffer.from([2, ...fixtureHandle(1).subarray(1)]); // unknown handle version
    return r.bytes(r.pick([1, 8, 26, 55, 56]));
  },
  names: FIXTURE_NAMES,
};

function name(r: Rand, env: NfsArgEnv): string {
  const x = r.float();
  if (x < 0.75) return r.pick(env.names);
  if (x < 0.85) return 'n'.repeat(r.pick([1, 254, 255]));
  if (x < 0.9) return 'ü'.repeat(127); // 254 bytes of UTF-8
  return `x${r.int(1000)}`;
}

function u64(r: Rand): bigint {
  return r.pick([0n, 1n, 511n, 4096n, 8191n, 8192n, 65536n, 1048576n, 2n ** 32n, 2n ** 44n, 2n ** 50n - 1n, 2n ** 53n - 1n]);
}

function sattr(w: TracingWriter, r: Rand): void {
  const set = (p: number, value: () => void): void => {
    const on = r.chance(p);
    w.bool(on);
    if (on) value();
  };
  set(0.4, () => w.u32(r.pick([0o644, 0o755, 0o4755, 0o7777, 0o177777])));
  set(0.2, () => w.u32(r.pick([0, 1000, 0xffff_fffe])));
  set(0.2, () => w.u32(r.pick([0, 1000, 0xffff_fffe])));
  set(0.3, () => w.u64(r.pick([0n, 1n, 4096n, 8192n, 1048576n, 2n ** 44n])));
  for (let i = 0; i < 2; i++) {
    const how = r.int(3);
    w.u32(how);
    if (how === 2) w.u32(r.pick([0, 1_700_000_000, 0xffff_ffff])).u32(r.pick([0, 999_999_999, 0xffff_ffff]));
  }
}

type ArgEncoder = (w: TracingWriter, r: Rand) => void;

/** NFSv3 argument encoders by procedure number, for the file system `env` describes. */
export function nfsArgs(env: NfsArgEnv): readonly ArgEncoder[] {
  const handle = (r: Rand): Buffer => env.handle(r);
  const diropargs = (w: TracingWriter, r: Rand): void => void w.opaque(handle(r)).string(name(r, env));
  return [
    /* 0 NULL */ () => undefined,
    /* 1 GETATTR */ (w, r) => w.opaque(handle(r)),
    /* 2 SETATTR */ (w, r) => {
      w.opaque(handle(r));
      sattr(w, r);
      const guard = r.chance(0.3);
      w.bool(guard);
      if (guard) w.u32(r.u32()).u32(r.int(1e9));
    },
    /* 3 LOOKUP */ diropargs,
    /* 4 ACCESS */ (w, r) => w.opaque(handle(r)).u32(r.pick([0x1, 0x2, 0x3f, 0xffff_ffff])),
    /* 5 READLINK */ (w, r) => w.opaque(handle(r)),
    /* 6 READ */ (w, r) =>
      w
        .opaque(handle(r))
        .u64(u64(r))
        .count(r.pick([0, 1, 4096, 8192, 1048576, 1048577])),
    /* 7 WRITE */ (w, r) => {
      const data = r.bytes(r.pick([0, 1, 3, 512, 4096]));
      w.opaque(handle(r)).u64(u64(r)).count(data.length).u32(r.int(3)).opaque(data);
    },
    /* 8 CREATE */ (w, r) => {
      diropargs(w, r);
      const how = r.int(3);
      w.u32(how);
      if (how === 2) w.fixedOpaque(r.bytes(8));
      else sattr(w, r);
    },
    /* 9 MKDIR */ (w, r) => {
      diropargs(w, r);
      sattr(w, r);
    },
    /* 10 SYMLINK */ (w, r) => {
      diropargs(w, r);
      sattr(w, r);
      w.string('../target');
    },
    /* 11 MKNOD */ (w, r) => {
      diropargs(w, r);
      const type = r.pick([1, 2, 3, 4, 5, 6, 7]);
      w.u32(type);
      if (type === 3 || type === 4) {
        sattr(w, r);
        w.u32(8).u32(1); // specdata3
      } else if (type === 6 || type === 7) sattr(w, r);
    },
    /* 12 REMOVE */ diropargs,
    /* 13 RMDIR */ diropargs,
    /* 14 RENAME */ (w, r) => {
      diropargs(w, r);
      diropargs(w, r);
    },
    /* 15 LINK */ (w, r) => {
      w.opaque(handle(r));
      diropargs(w, r);
    },
    /* 16 READDIR */ (w, r) =>
      w
        .opaque(handle(r))
        .u64(r.pick([0n, 2n, 5n, 26n, 27n, 2n ** 63n]))
        .fixedOpaque(Buffer.alloc(8))
        .count(r.pick([0, 100, 512, 4096, 65536])),
    /* 17 READDIRPLUS */ (w, r) =>
      w
        .opaque(handle(r))
        .u64(r.pick([0n, 2n, 5n, 26n]))
        .fixedOpaque(Buffer.alloc(8))
        .count(r.pick([0, 100, 512, 8192]))
        .count(r.pick([0, 200, 1024, 32768])),
    /* 18 FSSTAT */ (w, r) => w.opaque(handle(r)),
    /* 19 FSINFO */ (w, r) => w.opaque(handle(r)),
    /* 20 PATHCONF */ (w, r) => w.opaque(handle(r)),
    /* 21 COMMIT */ (w, r) =>
      w
        .opaque(handle(r))
        .u64(u64(r))
        .count(r.pick([0, 4096, 0xffff_ffff])),
  ];
}
export const NFS_PROCEDURE_NAMES = [
  'NULL',
  'GETATTR',
  'SETATTR',
  'LOOKUP',
  'ACCESS',
  'READLINK',
  'READ',
  'WRITE',
  'CREATE',
  'MKDIR',
  'SYMLINK',
  'MKNOD',
  'REMOVE',
  'RMDIR',
  'RENAME',
  'LINK',
  'READDIR',
  'READDIRPLUS',
  'FSSTAT',
  'FSINFO',
  'PATHCONF',
  'COMMIT',
] as const;

function dirpath(r: Rand): string {
  return r.pick([
    EXPORT_PATH,
    `${EXPORT_PATH}/`,
    `${EXPORT_PATH}/sub`,
    `${EXPORT_PATH}/sub/deep`,
    `${EXPORT_PATH}/disk.raw`,
    `${EXPORT_PATH}/../etc`,
    '/',
    '/nope',
    'p'.repeat(1024),
  ]);
}

/** MOUNT v3: NULL, MNT, DUMP, UMNT, UMNTALL, EXPORT. */
const MOUNT_ARGS: readonly ArgEncoder[] = [
  () => undefined,
  (w, r) => w.string(dirpath(r)),
  () => undefined,
  (w, r) => w.string(dirpath(r)),
  () => undefined,
  () => undefined,
];
export const MOUNT_PROCEDURE_NAMES = ['NULL', 'MNT', 'DUMP', 'UMNT', 'UMNTALL', 'EXPORT'] as const;

/** Portmapper v2: NULL, SET, UNSET, GETPORT, DUMP (CALLIT is not offered: PROC_UNAVAIL). */
const PMAP_ARGS: readonly ArgEncoder[] = [
  () => undefined,
  ...[0, 1, 2].map((): ArgEncoder => (w, r) => {
    w.u32(r.pick([100000, 100003, 100005, 400000, r.u32()])).u32(r.pick([1, 2, 3, 4]));
    w.u32(r.pick([6, 17, 0])).u32(r.pick([0, 111, 2049, 65535]));
  }),
  () => undefined,
];
export const PMAP_PROCEDURE_NAMES = ['NULL', 'SET', 'UNSET', 'GETPORT', 'DUMP'] as const;

export const PROGRAM_ARGS: ReadonlyMap<number, readonly ArgEncoder[]> = new Map([
  [100003, nfsArgs(MEMORY_ENV)],
  [100005, MOUNT_ARGS],
  [100000, PMAP_ARGS],
]);

/** One procedure's arguments, preceded by its number (kept out of most mutations). */
export function procedureSample(args: readonly ArgEncoder[], r: Rand): Sample {
  const w = new TracingWriter();
  const proc = r.int(args.length);
  w.u32(proc);
  args[proc]!(w, r);
  return w.sample(4);
}

function credentials(w: TracingWriter, r: Rand): void {
  const x = r.float();
  if (x < 0.3) {
    w.u32(AUTH_NONE).opaque(Buffer.alloc(0));
    return;
  }
  if (x < 0.9) {
    const body = new TracingWriter();
    body.u32(r.u32()).string(r.pick(['esxi-01', '', 'h'.repeat(255)]));
    body.u32(r.pick([0, 1000])).u32(r.pick([0, 1000]));
    const gids = r.pick([0, 1, 16]);
    body.count(gids);
    for (let i = 0; i < gids; i++) body.u32(i);
    // The body's own length fields, shifted past the flavor and the body length.
    const at = w.length + 8;
    w.u32(AUTH_SYS).opaque(body.toBuffer());
    for (const o of body.lengths) w.lengths.push(at + o);
    return;
  }
  w.u32(r.pick([2, 3, 6, 390003])).opaque(r.bytes(r.pick([0, 4, 20, MAX_AUTH_BYTES])));
}

/** A whole CALL record: header, credentials, verifier, then valid arguments for a program we serve (or not). */
export function callSample(r: Rand): Sample {
  const w = new TracingWriter();
  const prog = r.chance(0.15) ? r.pick([100021, r.u32()]) : r.pick([100000, 100003, 100003, 100005]);
  const args = PROGRAM_ARGS.get(prog);
  const vers = prog === 100000 ? 2 : prog === 100003 || prog === 100005 ? (r.chance(0.95) ? 3 : r.pick([1, 2, 4])) : r.int(5);
  const proc = args ? r.int(args.length + 1) : r.int(30);
  w.u32(r.u32())
    .u32(0)
    .u32(r.chance(0.97) ? 2 : r.pick([1, 3]))
    .u32(prog)
    .u32(vers)
    .u32(proc);
  credentials(w, r);
  w.u32(AUTH_NONE).opaque(Buffer.alloc(0));
  const encode = args?.[proc];
  if (encode) encode(w, r);
  return w.sample();
}
