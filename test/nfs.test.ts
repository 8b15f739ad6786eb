import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '../src/core/log.js';
import { MOUNT_PROGRAM, NFS_PROGRAM, mountProgram, nfsProgram } from '../src/nfs/index.js';
import { IPPROTO_TCP, PortmapRegistry, RpcServer, XdrWriter, portmapProgram, type XdrReader } from '../src/rpc/index.js';
import { MemoryFileSystem } from '../src/testing/memory-fs.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { randomBytes, rng, tempDir, withPort111 } from './helpers.js';

const run = promisify(execFile);
const logger = createLogger('error');
const MiB = 1 << 20;

async function serve(fs: MemoryFileSystem): Promise<{ port: number; server: RpcServer }> {
  const server = new RpcServer({ logger });
  server.register(mountProgram(fs));
  server.register(nfsProgram(fs));
  return { port: await server.listen(0, '127.0.0.1'), server };
}

async function populated(): Promise<{ fs: MemoryFileSystem; disk: Buffer }> {
  const fs = new MemoryFileSystem('/export');
  const root = fs.mount('/export')!;
  const disk = randomBytes(rng(5), 3 * MiB + 3 * 512); // VM disks are whole sectors
  const h = await fs.create(root, 'disk.raw', { mode: 'unchecked', attrs: {} });
  await fs.write(h, 0, disk);
  const sub = await fs.mkdir(root, 'sub', {});
  for (let i = 0; i < 300; i++) await fs.create(sub, `file-${String(i).padStart(3, '0')}.txt`, { mode: 'guarded', attrs: {} });
  return { fs, disk };
}

test('nfs: libnfs clients (nfs-ls, nfs-cat, nfs-cp) read, list and write through MOUNT and NFSv3', async () => {
  const { fs, disk } = await populated();
  const { port, server } = await serve(fs);
  const { dir, cleanup } = await tempDir();
  try {
    const q = `?version=3&nfsport=${port}&mountport=${port}`;
    const cat = await run('nfs-cat', [`nfs://127.0.0.1/export/disk.raw${q}`], { encoding: 'buffer', maxBuffer: 64 * MiB });
    assert.ok(cat.stdout.equals(disk), 'nfs-cat returns the file bytes');
    const ls = (await run('nfs-ls', [`nfs://127.0.0.1/export/sub${q}`])).stdout;
    const names = ls
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop())
      .filter((n) => n?.startsWith('file-'));
    assert.equal(names.length, 300, 'every entry listed once, across READDIRPLUS pages');
    assert.equal(new Set(names).size, 300);
    const up = randomBytes(rng(6), 2 * MiB + 7);
    await writeFile(join(dir, 'up.bin'), up);
    const commitsBefore = fs.commits;
    await run('nfs-cp', [join(dir, 'up.bin'), `nfs://127.0.0.1/export/up.bin${q}`]);
    const h = await fs.lookup(fs.mount('/export')!, 'up.bin');
    assert.ok((await fs.read(h, 0, up.length + 10)).equals(up), 'nfs-cp upload');
    assert.ok(fs.commits > commitsBefore, 'the client closed with COMMIT');
    await run('nfs-cp', [`nfs://127.0.0.1/export/up.bin${q}`, join(dir, 'down.bin')]);
    assert.ok((await readFile(join(dir, 'down.bin'))).equals(up), 'nfs-cp download');
    // GUARDED create of an existing name fails: nfs-cp refuses to overwrite.
    await assert.rejects(run('nfs-cp', [join(dir, 'up.bin'), `nfs://127.0.0.1/export/up.bin${q}`]));
  } finally {
    await server.close();
    await cleanup();
  }
});

function status(r: XdrReader): number {
  assert.equal(r.u32(), 1);
  assert.equal(r.u32(), 0);
  r.u32();
  r.opaque(400);
  assert.equal(r.u32(), 0, 'RPC SUCCESS');
  return r.u32();
}

test('nfs: bad handles, bad names, READ eof, exact ACCESS bits, one write verifier, READDIR cookies', async () => {
  const { fs, disk } = await populated();
  const { port, server } = await serve(fs);
  const c = await RpcTestClient.connect(port);
  try {
    const root = fs.mount('/export')!;
    const file = await fs.lookup(root, 'disk.raw');
    const sub = await fs.lookup(root, 'sub');
    const call = (proc: number, w: XdrWriter): Promise<XdrReader> => c.call(NFS_PROGRAM, 3, proc, w.toBuffer());
    assert.equal(status(await call(1, new XdrWriter().opaque(Buffer.alloc(60)))), 10001, 'handle over 56 bytes: BADHANDLE');
    assert.equal(status(await call(1, new XdrWriter().opaque(Buffer.from([9, 9, 9])))), 10001, 'unknown shape: BADHANDLE');
    const gone = Buffer.from(fs.handle(999n));
    assert.equal(status(await call(1, new XdrWriter().opaque(gone))), 70, 'well-formed but gone: STALE');
    assert.equal(status(await call(3, new XdrWriter().opaque(root).string('a/b'))), 22, 'a "/" in a name: INVAL');
    assert.equal(status(await call(3, new XdrWriter().opaque(root).string('x'.repeat(256)))), 63, 'NAMETOOLONG');
    const mk = new XdrWriter().opaque(root).string('..').u32(1);
    for (let i = 0; i < 6; i++) mk.u32(0);
    assert.equal(status(await call(8, mk)), 22, 'CREATE ".." is INVAL');
    assert.equal(status(await call(3, new XdrWriter().opaque(root).string('missing'))), 2, 'NOENT');

    // READ that reaches the end carries eof even with data.
    let r = await call(
      6,
      new XdrWriter()
        .opaque(file)
        .u64(BigInt(disk.length - 100))
        .u32(4096),
    );
    assert.equal(status(r), 0);
    assert.equal(r.bool(), true);
    r.fixedOpaque(84);
    assert.equal(r.u32(), 100);
    assert.equal(r.bool(), true, 'eof');
    assert.ok(r.opaque(4096).equals(disk.subarray(disk.length - 100)));
    r = await call(6, new XdrWriter().opaque(file).u64(0n).u32(4096));
    status(r);
    r.bool();
    r.fixedOpaque(84);
    r.u32();
    assert.equal(r.bool(), false, 'no eof in the middle');
    assert.equal(status(await call(6, new XdrWriter().opaque(sub).u64(0n).u32(10))), 21, 'READ of a directory: ISDIR');

    r = await call(4, new XdrWriter().opaque(file).u32(0x3f));
    assert.equal(status(r), 0);
    r.bool();
    r.fixedOpaque(84);
    assert.equal(r.u32(), 0x3d, 'a file grants all asked but LOOKUP');
    r = await call(4, new XdrWriter().opaque(sub).u32(0x1));
    status(r);
    r.bool();
    r.fixedOpaque(84);
    assert.equal(r.u32(), 0x1, 'exactly the bits asked');

    const verf = async (): Promise<string> => {
      const w = await call(7, new XdrWriter().opaque(file).u64(10n).u32(3).u32(0).opaque(Buffer.from('abc')));
      assert.equal(status(w), 0);
      w.bool();
      w.bool();
      w.fixedOpaque(84);
      assert.equal(w.u32(), 3);
      assert.equal(w.u32(), 0, 'UNSTABLE answered UNSTABLE');
      return w.fixedOpaque(8).toString('hex');
    };
    assert.equal(await verf(), await verf(), 'one write verifier per server');
    assert.equal(status(await call(7, new XdrWriter().opaque(file).u64(0n).u32(5).u32(2).opaque(Buffer.from('abc')))), 22, 'count ≠ data: INVAL');

    // READDIR in small pages: every name exactly once, cookies honoured.
    const seen: string[] = [];
    let cookie = 0n;
    for (let page = 0; page < 100; page++) {
      const rd = await call(16, new XdrWriter().opaque(sub).u64(cookie).fixedOpaque(Buffer.alloc(8)).u32(1024));
      assert.equal(status(rd), 0);
      if (rd.bool()) rd.fixedOpaque(84);
      rd.fixedOpaque(8);
      while (rd.bool()) {
        rd.u64();
        seen.push(rd.string(255));
        cookie = rd.u64();
      }
      if (rd.bool()) break;
    }
    assert.deepEqual(seen.filter((n) => n.startsWith('file-')).length, 300);
    assert.equal(new Set(seen).size, seen.length);
    assert.deepEqual(seen.slice(0, 2), ['.', '..']);
    assert.equal(status(await call(16, new XdrWriter().opaque(sub).u64(0n).fixedOpaque(Buffer.alloc(8)).u32(10))), 10005, 'TOOSMALL');
    assert.equal(status(await call(10, new XdrWriter().opaque(root).string('l'))), 10004, 'SYMLINK: NOTSUPP');

    const m = await c.call(MOUNT_PROGRAM, 3, 1, new XdrWriter().string('/nope').toBuffer());
    status(m);
    const mm = await c.call(MOUNT_PROGRAM, 3, 1, new XdrWriter().string('/export/').toBuffer());
    assert.equal(status(mm), 0);
    assert.ok(mm.opaque(64).equals(root));
  } finally {
    c.close();
    await server.close();
  }
});

test('nfs: QEMU reads and writes a disk through nfs:// and the portmapper on 111', () =>
  withPort111(async () => {
    const { fs, disk } = await populated();
    const { port, server } = await serve(fs);
    const registry = new PortmapRegistry();
    registry.set({ prog: MOUNT_PROGRAM, vers: 3, prot: IPPROTO_TCP, port });
    registry.set({ prog: NFS_PROGRAM, vers: 3, prot: IPPROTO_TCP, port });
    const pmap = new RpcServer({ logger });
    pmap.register(portmapProgram(registry));
    await pmap.listen(111, '127.0.0.1');
    const { dir, cleanup } = await tempDir();
    try {
      const url = 'nfs://127.0.0.1/export/disk.raw';
      const info = (await run('qemu-img', ['info', '--output=json', '-f', 'raw', url])).stdout;
      assert.equal((JSON.parse(info) as { 'virtual-size': number })['virtual-size'], disk.length);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url, join(dir, 'out.raw')]);
      assert.ok((await readFile(join(dir, 'out.raw'))).equals(disk), 'qemu-img convert nfs:// is byte-exact');
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 4096 65536', url]);
      const h = await fs.lookup(fs.mount('/export')!, 'disk.raw');
      const got = await fs.read(h, 0, disk.length);
      assert.ok(got.subarray(4096, 4096 + 65536).equals(Buffer.alloc(65536, 0x5a)), 'qemu-io write landed');
      assert.ok(got.subarray(0, 4096).equals(disk.subarray(0, 4096)));
      const check = (await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 4096 65536', url])).stdout;
      assert.match(check, /read 65536\/65536 bytes/);
    } finally {
      await pmap.close();
      await server.close();
      await cleanup();
    }
  }));
