/**
 * Helpers of the file-level recovery tests: seeded file content, a manifest
 * of a folder tree (what each path is, its bytes' sha256, mode, owners,
 * mtime in ns, symlink target, hard links) to compare a tree downloaded from
 * a point with the source it was built from, and the appliances a test's
 * server started (found by the test's TMPDIR).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';

/** `n` bytes from AES-256-CTR keyed by `seed`: deterministic, incompressible, fast (GB/s), written in 8 MiB pieces. */
export function* seededChunks(seed: string, n: number, chunk = 8 * 1024 * 1024): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let done = 0; done < n; done += chunk) yield c.update(zeros.subarray(0, Math.min(chunk, n - done)));
}

export function seeded(seed: string, n: number): Buffer {
  return Buffer.concat([...seededChunks(seed, n)]);
}

export async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

export interface Node {
  readonly type: 'file' | 'directory' | 'symlink' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** ns since the epoch, as text (bigint). */
  readonly mtimeNs: string;
  readonly size?: number;
  readonly sha256?: string;
  readonly target?: string;
  readonly nlink?: number;
  /** The other paths of this tree with the same inode (hard links), sorted. */
  readonly sameInode?: string[];
}

/** Every path under `dir` (relative, '/'-separated; '' is `dir` itself) with what it is; `skip` names top-level entries left out. */
export async function manifest(dir: string, skip: readonly string[] = ['lost+found']): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const inodes = new Map<string, string[]>();
  const walk = async (rel: string): Promise<void> => {
    const host = rel === '' ? dir : join(dir, rel);
    const st = await lstat(host, { bigint: true });
    const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
    const node: Node = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs.toString(),
      ...(type === 'file' ? { size: Number(st.size), sha256: await sha256Of(host) } : {}),
      ...(type === 'symlink' ? { target: await readlink(host) } : {}),
      ...(type !== 'directory' ? { nlink: Number(st.nlink) } : {}),
    };
    out.set(rel, node);
    if (type === 'file' && st.nlink > 1n) {
      const k = st.ino.toString();
      inodes.set(k, [...(inodes.get(k) ?? []), rel]);
    }
    if (type === 'directory') for (const n of (await readdir(host)).sort()) if (!(rel === '' && skip.includes(n))) await walk(rel === '' ? n : `${rel}/${n}`);
  };
  await walk('');
  for (const group of inodes.values())
    for (const p of group)
      out.set(p, {
        ...out.get(p)!,
        sameInode: group.filter((x) => x !== p).sort(),
      });
  return out;
}

/** Compares two manifests on `fields` (every field when absent); fails with the first differences. */
export function assertSameTree(
  got: Map<string, Node>,
  want: Map<string, Node>,
  what: string,
  opts: { fields?: readonly (keyof Node)[]; ignorePaths?: readonly string[] } = {},
): void {
  const diffs: string[] = [];
  const ignore = new Set(opts.ignorePaths ?? []);
  const pick = (n: Node): Record<string, unknown> =>
    Object.fromEntries(Object.entries(n).filter(([k]) => opts.fields === undefined || (opts.fields as string[]).includes(k)));
  for (const p of new Set([...got.keys(), ...want.keys()])) {
    if (ignore.has(p)) continue;
    const g = got.get(p);
    const w = want.get(p);
    if (g === undefined || w === undefined) {
      diffs.push(`${p || '.'}: ${g === undefined ? 'missing' : 'not in the source'}`);
      continue;
    }
    const [a, b] = [pick(g), pick(w)];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)]))
      if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) diffs.push(`${p || '.'}: ${k} ${JSON.stringify(a[k])} != ${JSON.stringify(b[k])} (source)`);
  }
  assert.deepEqual(diffs.slice(0, 30), [], `${what}: ${diffs.length} differences with the source (${got.size} paths downloaded, ${want.size} in the source)`);
}

/** A response body into a file (streamed: a download may be hundreds of MiB). */
export async function saveBody(res: Response, to: string): Promise<void> {
  assert.ok(res.body, 'a body');
  await pipeline(Readable.fromWeb(res.body as ReadableStream), createWriteStream(to));
}

/** guestfish and QEMU processes started with TMPDIR=`tmpDir` (a test's server's appliances). */
export function appliances(tmpDir: string): string[] {
  const out: string[] = [];
  for (const pid of (spawnSync('ls', ['/proc'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((x) => /^\d+$/.test(x))) {
    const env = spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'utf8' }).stdout ?? '';
    if (!env.split('\0').includes(`TMPDIR=${tmpDir}`)) continue;
    const cmd = (spawnSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).stdout ?? '').replace(/\0/g, ' ');
    if (/guestfish|qemu/.test(cmd)) out.push(`${pid} ${cmd.slice(0, 120)}`);
  }
  return out;
}
