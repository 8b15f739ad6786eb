/**
 * The load benchmark's clients. Each runs until the deadline, checks every
 * byte it reads against the session's DiskModel, and counts its operations,
 * bytes and errors. Real tools where there are some (qemu-io and nbdcopy
 * over NBD, nfs-cat and nfs-cp through libnfs), an in-process NFSv3 client
 * for random reads and writes of the disk.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NfsDiskClient, STABLE } from '../src/testing/nfs-disk-client.js';
import { CHUNK, type DiskModel } from './load-model.js';

export type Protocol = 'nfs' | 'nbd';

export interface Tally {
  readonly kind: string;
  readonly protocol: Protocol;
  ops: number;
  readBytes: number;
  writtenBytes: number;
  errors: number;
}

/** What every client gets: where its session is served, the run's shared state, and its own tally. */
export interface ClientContext {
  readonly id: number;
  readonly session: string;
  readonly model: DiskModel;
  readonly nfsPort: number;
  readonly mountPort: number;
  readonly nbdPort: number;
  readonly rand: () => number;
  readonly tally: Tally;
  readonly work: string;
  readonly run: Run;
  /** The 4 KiB-aligned part of the disk only this client writes (writers only). */
  readonly slice?: { readonly offset: number; readonly length: number };
}

/** Shared by all clients: the deadline, the tools still running, the first errors. */
export class Run {
  readonly children = new Set<ChildProcess>();
  /** Whole-disk copies: at the deadline they are cut short. */
  readonly streams = new Set<ChildProcess>();
  readonly firstErrors: string[] = [];

  constructor(private readonly deadline: number) {}

  get over(): boolean {
    return Date.now() >= this.deadline;
  }

  error(ctx: ClientContext, what: string): void {
    ctx.tally.errors += 1;
    if (this.firstErrors.length < 20) this.firstErrors.push(`${ctx.tally.kind} #${ctx.id} on ${ctx.session}: ${what}`);
  }

  /** At the deadline: whole-disk copies still running are cut short (not an error). */
  stopStreams(): void {
    for (const p of this.streams) p.kill('SIGKILL');
  }

  /** Whatever is still running (a failed run): every tool is killed. */
  killAll(): void {
    for (const p of this.children) p.kill('SIGKILL');
  }
}

const nfsUrl = (ctx: ClientContext, path: string): string =>
  `nfs://127.0.0.1/lifeboat/${ctx.session}/${path}?version=3&nfsport=${ctx.nfsPort}&mountport=${ctx.mountPort}`;
const nbdUrl = (ctx: ClientContext): string => `nbd://127.0.0.1:${ctx.nbdPort}/${ctx.session}/disk0`;
/** A tool's complaint on one line. */
const brief = (text: string): string => text.trim().split('\n').filter(Boolean).slice(0, 2).join(' / ').slice(0, 300);
const between = (rand: () => number, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));

/** A write's place and size: whole chunks inside the client's slice. */
function chunkRange(ctx: ClientContext, maxChunks: number): { offset: number; length: number } {
  const slice = ctx.slice!;
  const chunks = between(ctx.rand, 1, maxChunks);
  const offset = slice.offset + CHUNK * Math.floor(ctx.rand() * (slice.length / CHUNK - chunks + 1));
  return { offset, length: chunks * CHUNK };
}

/** A client's n-th write: consecutive writes never share a fill, so a stale chunk is caught. */
const fillOf = (n: number): number => 1 + (n % 255);

/** Random reads anywhere on the disk through NFSv3 READ (4 KiB to 1 MiB, any alignment). */
export async function nfsRandomReader(ctx: ClientContext): Promise<void> {
  const c = await NfsDiskClient.open(ctx.nfsPort, ctx.mountPort, '/lifeboat', [ctx.session, 'disk0-flat.vmdk']);
  try {
    while (!ctx.run.over) {
      const length = ctx.rand() < 0.7 ? between(ctx.rand, 512, 64 * 1024) : between(ctx.rand, 64 * 1024, 1024 * 1024);
      const offset = Math.floor(ctx.rand() * (ctx.model.size - length));
      const t0 = ctx.model.readStart();
      try {
        const data = await c.read(offset, length);
        ctx.tally.ops += 1;
        ctx.tally.readBytes += data.length;
        if (data.length !== length) ctx.run.error(ctx, `READ ${offset}+${length} returned ${data.length} bytes`);
        const wrong = ctx.model.check(offset, data, t0);
        if (wrong) ctx.run.error(ctx, `READ ${offset}+${length}: ${wrong}`);
      } finally {
        ctx.model.readEnd(t0);
      }
    }
  } finally {
    c.close();
  }
}

/** NFSv3 WRITEs (UNSTABLE or FILE_SYNC) into the client's slice, each read back. */
export async function nfsWriter(ctx: ClientContext): Promise<void> {
  const c = await NfsDiskClient.open(ctx.nfsPort, ctx.mountPort, '/lifeboat', [ctx.session, 'disk0-flat.vmdk']);
  try {
    for (let n = 0; !ctx.run.over; n++) {
      const { offset, length } = chunkRange(ctx, 64);
      const fill = fillOf(n);
      const stable = ctx.rand() < 0.5 ? STABLE.FILE_SYNC : STABLE.UNSTABLE;
      const versions = ctx.model.send(offset, length, fill);
      const reply = await c.write(offset, Buffer.alloc(length, fill), stable);
      ctx.model.acknowledged(versions);
      ctx.tally.ops += 1;
      ctx.tally.writtenBytes += length;
      if (reply.count !== length || reply.committed < stable)
        ctx.run.error(ctx, `WRITE ${offset}+${length}: count ${reply.count}, committed ${reply.committed}`);
      const t0 = ctx.model.readStart();
      try {
        const back = await c.read(offset, length);
        ctx.tally.ops += 1;
        ctx.tally.readBytes += back.length;
        const wrong = ctx.model.check(offset, back, t0);
        if (wrong) ctx.run.error(ctx, `read back ${offset}+${length}: ${wrong}`);
      } finally {
        ctx.model.readEnd(t0);
      }
    }
  } finally {
    c.close();
  }
}

/**
 * Runs a tool whose stdout is the whole disk (nfs-cat, nbdcopy to a pipe),
 * checking the bytes as they stream in. Cut short at the deadline.
 */
async function streamWholeDisk(ctx: ClientContext, cmd: string, args: string[]): Promise<void> {
  const t0 = ctx.model.readStart();
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.run.children.add(p);
  ctx.run.streams.add(p);
  let pos = 0;
  let wrong: string | undefined;
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => {
    wrong ??= ctx.model.check(pos, d.subarray(0, Math.max(0, Math.min(d.length, ctx.model.size - pos))), t0);
    pos += d.length;
    ctx.tally.readBytes += d.length;
  });
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
  ctx.run.children.delete(p);
  ctx.run.streams.delete(p);
  ctx.model.readEnd(t0);
  if (wrong) ctx.run.error(ctx, `${cmd} at ${pos}: ${wrong}`);
  if (code === null && ctx.run.over) return; // stopped at the deadline
  ctx.tally.ops += 1;
  if (code !== 0) ctx.run.error(ctx, `${cmd} exited ${code}: ${brief(stderr)}`);
  else if (pos !== ctx.model.size) ctx.run.error(ctx, `${cmd} gave ${pos} bytes of ${ctx.model.size}`);
}

/** libnfs: nfs-cat of the whole disk, over and over. */
export async function nfsCatReader(ctx: ClientContext): Promise<void> {
  while (!ctx.run.over) await streamWholeDisk(ctx, 'nfs-cat', [nfsUrl(ctx, 'disk0-flat.vmdk')]);
}

/** libnbd: nbdcopy of the whole disk to a pipe, over and over. */
export async function nbdcopyReader(ctx: ClientContext): Promise<void> {
  while (!ctx.run.over) await streamWholeDisk(ctx, 'nbdcopy', [nbdUrl(ctx), '-']);
}

/** Runs a tool to completion; resolves with its exit code and output. */
function tool(run: Run, cmd: string, args: string[]): Promise<{ code: number | null; out: Buffer; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    run.children.add(p);
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      run.children.delete(p);
      resolve({ code, out: Buffer.concat(out), err });
    });
  });
}

/** libnfs: nfs-cp a new file (64 KiB to 1 MiB) into the session folder, then nfs-cat it back. */
export async function nfsFileWriter(ctx: ClientContext): Promise<void> {
  for (let n = 0; !ctx.run.over; n++) {
    const content = Buffer.alloc(between(ctx.rand, 16, 256) * 4096);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE(Math.floor(ctx.rand() * 2 ** 32), i);
    const local = join(ctx.work, `file-${ctx.id}.bin`);
    await writeFile(local, content);
    const name = `load-${ctx.id}-${n}.bin`;
    const put = await tool(ctx.run, 'nfs-cp', [local, nfsUrl(ctx, name)]);
    if (put.code === null && ctx.run.over) return;
    ctx.tally.ops += 1;
    if (put.code !== 0) {
      ctx.run.error(ctx, `nfs-cp ${name} exited ${put.code}: ${brief(put.err)}`);
      continue;
    }
    ctx.tally.writtenBytes += content.length;
    const got = await tool(ctx.run, 'nfs-cat', [nfsUrl(ctx, name)]);
    if (got.code === null && ctx.run.over) return;
    ctx.tally.ops += 1;
    ctx.tally.readBytes += got.out.length;
    if (got.code !== 0) ctx.run.error(ctx, `nfs-cat ${name} exited ${got.code}: ${brief(got.err)}`);
    else if (!got.out.equals(await readFile(local)))
      ctx.run.error(ctx, `nfs-cat ${name}: not what nfs-cp wrote (${got.out.length} of ${content.length} bytes)`);
  }
}

const PROMPT = 'qemu-io> ';

/** One interactive qemu-io: a command at a time, its output up to the next prompt. */
class QemuIo {
  private out = '';
  private waiting: ((text: string) => void) | undefined;
  private exitCode: number | null | undefined;
  readonly closed: Promise<number | null>;

  constructor(
    readonly proc: ChildProcess,
    run: Run,
  ) {
    run.children.add(proc);
    proc.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      this.answer();
    });
    proc.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    proc.stdin!.on('error', () => undefined); // a write after qemu-io died: its exit says why
    this.closed = new Promise((resolve) =>
      proc.on('close', (code) => {
        this.exitCode = code;
        run.children.delete(proc);
        this.waiting?.(`${this.out}\nqemu-io exited ${code}`);
        this.waiting = undefined;
        resolve(code);
      }),
    );
  }

  private answer(): void {
    const at = this.out.indexOf(PROMPT);
    if (at < 0 || !this.waiting) return;
    const text = this.out.slice(0, at);
    this.out = this.out.slice(at + PROMPT.length);
    const w = this.waiting;
    this.waiting = undefined;
    w(text);
  }

  /** Output of one command; without one, what qemu-io printed before its first prompt. */
  command(line?: string): Promise<string> {
    if (this.exitCode !== undefined) return Promise.resolve(`${this.out}\nqemu-io exited ${this.exitCode}`);
    const p = new Promise<string>((resolve) => (this.waiting = resolve));
    if (line !== undefined) this.proc.stdin!.write(`${line}\n`);
    else this.answer();
    return p;
  }
}

/**
 * qemu-io over NBD, one connection for the whole run (like a VM): writes of
 * 4 KiB to 256 KiB into its slice (a quarter FUA), each read back with
 * pattern verification, a flush every eighth, and a re-read of an earlier
 * chunk.
 */
export async function qemuIoClient(ctx: ClientContext): Promise<void> {
  // stdbuf: qemu-io's output is line-buffered on a pipe too, so each reply arrives when it is done.
  const q = new QemuIo(spawn('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', nbdUrl(ctx)], { stdio: ['pipe', 'pipe', 'pipe'] }), ctx.run);
  const hex = (b: number): string => `0x${b.toString(16)}`;
  const failed = (text: string): boolean => /failed|error|exited/i.test(text);
  try {
    const hello = await q.command();
    if (failed(hello)) {
      ctx.run.error(ctx, `qemu-io: ${brief(hello)}`);
      return;
    }
    for (let n = 0; !ctx.run.over; n++) {
      const { offset, length } = chunkRange(ctx, 64);
      const fill = fillOf(n);
      const versions = ctx.model.send(offset, length, fill);
      const wrote = await q.command(`write ${ctx.rand() < 0.25 ? '-f ' : ''}-P ${hex(fill)} ${offset} ${length}`);
      ctx.tally.ops += 1;
      if (failed(wrote) || !/^wrote /m.test(wrote)) {
        ctx.run.error(ctx, `write ${offset}+${length}: ${brief(wrote)}`);
        continue;
      }
      ctx.model.acknowledged(versions);
      ctx.tally.writtenBytes += length;
      const reads: { offset: number; length: number; fill: number }[] = [{ offset, length, fill }];
      const earlier = ctx.slice!.offset + CHUNK * Math.floor(ctx.rand() * (ctx.slice!.length / CHUNK));
      const settled = ctx.model.settledFill(earlier);
      if (settled !== undefined) reads.push({ offset: earlier, length: CHUNK, fill: settled });
      for (const r of reads) {
        const got = await q.command(`read -P ${hex(r.fill)} ${r.offset} ${r.length}`);
        ctx.tally.ops += 1;
        if (failed(got) || !/^read /m.test(got)) ctx.run.error(ctx, `read -P ${hex(r.fill)} ${r.offset}+${r.length}: ${brief(got)}`);
        else ctx.tally.readBytes += r.length;
      }
      if (n % 8 === 7) {
        const flushed = await q.command('flush');
        ctx.tally.ops += 1;
        if (failed(flushed)) ctx.run.error(ctx, `flush: ${brief(flushed)}`);
      }
    }
  } finally {
    q.proc.stdin!.end();
    const code = await q.closed;
    if (code !== 0 && code !== null) ctx.run.error(ctx, `qemu-io exited ${code} (a command failed)`);
  }
}
