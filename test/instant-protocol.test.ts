import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NFS_PROGRAM } from '../src/nfs/index.js';
import { XdrWriter, type XdrReader } from '../src/rpc/index.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { cli, randomBytes, rng, tempDir, withPort111 } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MiB = 1 << 20;

function status(r: XdrReader): number {
  r.u32();
  r.u32();
  r.u32();
  r.opaque(400);
  assert.equal(r.u32(), 0, 'RPC accepted');
  return r.u32();
}

async function repoWithPoint(dir: string, bytes: Buffer, blockSize = '1M'): Promise<string> {
  const repo = join(dir, 'repo');
  await writeFile(join(dir, 'vm.img'), bytes);
  assert.equal((await cli(['repo', 'init', repo, '--block-size', blockSize])).code, 0);
  assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', join(dir, 'vm.img')])).code, 0);
  assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
  return repo;
}

async function startSession(repo: string, name: string): Promise<void> {
  const r = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', name]);
  assert.equal(r.code, 0, r.stderr);
}

/** Handle of /lifeboat/<path…> through MNT and LOOKUP. */
async function handleOf(s: Server, names: string[]): Promise<{ c: RpcTestClient; h: Buffer; session: Buffer }> {
  const m = await RpcTestClient.connect(s.mountPort);
  const r = await m.call(100005, 3, 1, new XdrWriter().string('/lifeboat').toBuffer());
  assert.equal(status(r), 0);
  let h = Buffer.from(r.opaque(64));
  m.close();
  const c = await RpcTestClient.connect(s.nfsPort);
  let session = h;
  for (const [i, n] of names.entries()) {
    const l = await c.call(NFS_PROGRAM, 3, 3, new XdrWriter().opaque(h).string(n).toBuffer());
    assert.equal(status(l), 0, `LOOKUP ${n}`);
    h = Buffer.from(l.opaque(64));
    if (i === 0) session = h;
  }
  return { c, h, session };
}

test('datastore: a damaged backup block answers NFS3ERR_IO and is logged with file and block; other reads go on', async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(1), 4 * MiB), '256K');
    const jobDir = join(repo, 'jobs', 'vm');
    const vbk = (await readdir(jobDir)).find((n) => n.endsWith('.vbk'))!;
    const fh = await open(join(jobDir, vbk), 'r+');
    await fh.write(Buffer.from('rot'), 0, 3, 12288 + 50); // inside block 0
    await fh.close();
    s = await startServer(repo, ['--no-portmap']);
    await startSession(repo, 'bad');
    const { c, h } = await handleOf(s, ['bad', 'disk0-flat.vmdk']);
    const read = (offset: number): Promise<XdrReader> => c.call(NFS_PROGRAM, 3, 6, new XdrWriter().opaque(h).u64(BigInt(offset)).u32(4096).toBuffer());
    assert.equal(status(await read(0)), 5, 'NFS3ERR_IO for the damaged block');
    const ok = await read(2 * MiB);
    assert.equal(status(ok), 0, 'an intact block still reads');
    c.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.match(s.log(), new RegExp(`NFS3ERR_IO: ${vbk}: disk 0 block 0 \\(file offset 12288\\)`));
  } finally {
    if (s) await kill9(s);
    await cleanup();
  }
});

test('datastore: ESXi lock-file dance, a large folder, and what may not be done to a recovered disk', async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(2), 2 * MiB));
    s = await startServer(repo, ['--no-portmap']);
    await startSession(repo, 'esx');
    const { c, session } = await handleOf(s, ['esx']);
    const call = (proc: number, w: XdrWriter): Promise<XdrReader> => c.call(NFS_PROGRAM, 3, proc, w.toBuffer());
    const guarded = (name: string): XdrWriter => {
      const w = new XdrWriter().opaque(session).string(name).u32(1);
      for (let i = 0; i < 6; i++) w.u32(0);
      return w;
    };
    // Guarded CREATE twice → EXIST; 84-byte FILE_SYNC rewrites; REMOVE.
    const created = await call(8, guarded('.lck-3a00000000000000'));
    assert.equal(status(created), 0);
    assert.equal(created.bool(), true);
    const lck = Buffer.from(created.opaque(64));
    assert.equal(status(await call(8, guarded('.lck-3a00000000000000'))), 17, 'second guarded create: EXIST');
    for (let i = 0; i < 3; i++) {
      const body = Buffer.alloc(84, 0x30 + i);
      const w = await call(7, new XdrWriter().opaque(lck).u64(0n).u32(84).u32(2).opaque(body));
      assert.equal(status(w), 0);
      w.bool();
      if (w.bool()) w.fixedOpaque(84);
      assert.equal(w.u32(), 84);
      assert.equal(w.u32(), 2, 'FILE_SYNC');
    }
    const rd = await call(6, new XdrWriter().opaque(lck).u64(0n).u32(1000));
    assert.equal(status(rd), 0);
    if (rd.bool()) rd.fixedOpaque(84);
    assert.equal(rd.u32(), 84);
    assert.equal(rd.bool(), true, 'eof');
    assert.ok(rd.opaque(1000).equals(Buffer.alloc(84, 0x32)));
    assert.equal(status(await call(12, new XdrWriter().opaque(session).string('.lck-3a00000000000000'))), 0, 'REMOVE');
    assert.equal(status(await call(3, new XdrWriter().opaque(session).string('.lck-3a00000000000000'))), 2, 'gone');
    // The recovered disk cannot be removed, renamed over, or resized; its name cannot be created.
    assert.equal(status(await call(12, new XdrWriter().opaque(session).string('disk0-flat.vmdk'))), 13, 'REMOVE disk: ACCES');
    assert.equal(status(await call(8, guarded('disk0-flat.vmdk'))), 17, 'CREATE over the disk: EXIST');
    // A large folder: 600 files, listed completely by a real client.
    const mk = new XdrWriter().opaque(session).string('logs');
    for (let i = 0; i < 6; i++) mk.u32(0);
    const made = await call(9, mk);
    assert.equal(status(made), 0);
    made.bool();
    const logs = Buffer.from(made.opaque(64));
    for (let i = 0; i < 600; i++) {
      const w = new XdrWriter().opaque(logs).string(`vmware-${i}.log`).u32(0);
      for (let k = 0; k < 6; k++) w.u32(0);
      assert.equal(status(await call(8, w)), 0);
    }
    c.close();
    const ls = (await run('nfs-ls', [`nfs://127.0.0.1/lifeboat/esx/logs?version=3&nfsport=${s.nfsPort}&mountport=${s.mountPort}`])).stdout;
    const names = ls.split('\n').filter((l) => l.includes('vmware-'));
    assert.equal(names.length, 600);
    const out = await run('nfs-ls', [`nfs://127.0.0.1/lifeboat?version=3&nfsport=${s.nfsPort}&mountport=${s.mountPort}`]);
    assert.match(out.stdout, /esx/);
    // A .vswp: CREATE then SETATTR size 1 GiB is a sparse file that costs no space.
    const c2 = await RpcTestClient.connect(s.nfsPort);
    const sw = new XdrWriter().opaque(session).string('vm-1a2b.vswp').u32(0);
    for (let i = 0; i < 6; i++) sw.u32(0);
    const swr = await c2.call(NFS_PROGRAM, 3, 8, sw.toBuffer());
    assert.equal(status(swr), 0);
    swr.bool();
    const swap = Buffer.from(swr.opaque(64));
    const setSize = new XdrWriter()
      .opaque(swap)
      .u32(0)
      .u32(0)
      .u32(0)
      .u32(1)
      .u64(BigInt(1024 * MiB))
      .u32(0)
      .u32(0)
      .u32(0);
    assert.equal(status(await c2.call(NFS_PROGRAM, 3, 2, setSize.toBuffer())), 0);
    c2.close();
    const { stat } = await import('node:fs/promises');
    const st = await stat(join(repo, 'cache', 'instant', 'esx', 'files', 'vm-1a2b.vswp'));
    assert.equal(st.size, 1024 * MiB);
    assert.ok(st.blocks * 512 < MiB, 'sparse');
  } finally {
    if (s) await kill9(s);
    await cleanup();
  }
});

test(
  'serve: busy default ports move to the next free one; a second server registers with the first portmapper; QEMU patterns survive a restart',
  { timeout: 10 * 60_000 },
  () =>
    withPort111(async () => {
      const { dir, cleanup } = await tempDir();
      const servers: Server[] = [];
      try {
        const disk = randomBytes(rng(3), 16 * MiB);
        const repoA = await repoWithPoint(join(dir), disk);
        const dirB = join(dir, 'b');
        await (await import('node:fs/promises')).mkdir(dirB);
        const repoB = await repoWithPoint(dirB, randomBytes(rng(4), 2 * MiB));
        const a = await startServer(repoA, [], { defaultPorts: true });
        servers.push(a);
        const b = await startServer(repoB, [], { defaultPorts: true });
        servers.push(b);
        assert.notEqual(b.nfsPort, a.nfsPort);
        assert.match(b.log(), /port \d+ is in use, serving on \d+ instead/);
        assert.match(b.log(), /on 111 kept another server's registration/, 'the first server keeps its programs on 111');
        // The first server's programs are still what port 111 answers.
        const pm = (await run('rpcinfo', ['-p', '127.0.0.1'])).stdout;
        assert.match(pm, new RegExp(`100003\\s+3\\s+tcp\\s+${a.nfsPort}`));
        assert.match(pm, new RegExp(`100005\\s+3\\s+tcp\\s+${a.mountPort}`));
        // …and the second is reachable with explicit ports.
        const viaPorts = (await run('nfs-ls', [`nfs://127.0.0.1/lifeboat?version=3&nfsport=${b.nfsPort}&mountport=${b.mountPort}`])).stdout;
        assert.equal(typeof viaPorts, 'string');
        await kill9(servers.pop()!);
        // A port given explicitly that is taken is an error (repoB's own server is gone: one server per repository).
        const explicit = await cli(['serve', '--repo', repoB, '--nfs-port', String(a.nfsPort), '--no-portmap']);
        assert.equal(explicit.code, 5);
        assert.match(explicit.stderr, /LFB_ERR_PORT_IN_USE/);

        await startSession(repoA, 'q');
        const restored = join(dir, 'restored.raw');
        assert.equal((await cli(['restore', 'vm', '--repo', repoA, '--point', 'latest', '--to', restored])).code, 0);
        const cat = (
          await run('nfs-cat', [`nfs://127.0.0.1/lifeboat/q/disk0-flat.vmdk?version=3&nfsport=${a.nfsPort}&mountport=${a.mountPort}`], {
            encoding: 'buffer',
            maxBuffer: 64 * MiB,
          })
        ).stdout;
        assert.ok(cat.equals(await readFile(restored)), 'nfs-cat equals lifeboat restore');
        const url = 'nfs://127.0.0.1/lifeboat/q/disk0-flat.vmdk';
        const patterns: [number, number, number][] = [
          [0, 512, 0x11],
          [4096 + 7 * 512, 4096, 0x22],
          [MiB - 2048, 8192, 0x33],
          [9 * MiB + 65536, 3 * MiB, 0x44],
          [16 * MiB - 4096, 4096, 0x55],
        ];
        await run('qemu-io', ['-f', 'raw', ...patterns.flatMap(([o, l, p]) => ['-c', `write -P 0x${p.toString(16)} ${o} ${l}`]), '-c', 'flush', url]);
        const readBack = async (): Promise<void> => {
          const out = (
            await run('qemu-io', [
              '-f',
              'raw',
              ...patterns.flatMap(([o, l, p]) => ['-c', `read -P 0x${p.toString(16)} ${o} ${l}`]),
              '-c',
              `read -P 0 ${16 * MiB - 8192} 0`,
              url,
            ])
          ).stdout;
          assert.doesNotMatch(out, /Pattern verification failed/, out);
          assert.equal((out.match(/read \d+\/\d+ bytes/g) ?? []).length, patterns.length + 1);
        };
        await readBack(); // a new connection
        await kill9(servers.pop()!);
        servers.push(await startServer(repoA, [], { defaultPorts: true }));
        await readBack(); // after kill -9 and restart
        // And what was not written still equals the backup.
        const after = (
          await run('nfs-cat', [`nfs://127.0.0.1/lifeboat/q/disk0-flat.vmdk?version=3&nfsport=${servers[0]!.nfsPort}&mountport=${servers[0]!.mountPort}`], {
            encoding: 'buffer',
            maxBuffer: 64 * MiB,
          })
        ).stdout;
        const want = await readFile(restored);
        for (const [o, l, p] of patterns) want.fill(p, o, o + l);
        assert.ok(after.equals(want));
      } finally {
        for (const s of servers) await kill9(s);
        await cleanup();
      }
    }),
);

test('serve: --allow refuses other clients on every connection; the control API stays on loopback', async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(5), MiB));
    s = await startServer(repo, ['--no-portmap', '--allow', '10.0.0.0/8']);
    await startSession(repo, 'x');
    await assert.rejects(
      run('nfs-ls', [`nfs://127.0.0.1/lifeboat/x?version=3&nfsport=${s.nfsPort}&mountport=${s.mountPort}`]),
      '127.0.0.1 is not in 10.0.0.0/8',
    );
    const c = await RpcTestClient.connect(s.nfsPort);
    await c.closed;
    const bad = await cli(['serve', '--repo', repo, '--allow', '10.0.0.0/33', '--no-portmap']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /LFB_ERR_INVALID_ARGUMENT/);
  } finally {
    if (s) await kill9(s);
    await cleanup();
  }
});

test('serve: with a system rpcbind on 111, registers with it, QEMU finds the datastore, and unregisters on stop', { timeout: 5 * 60_000 }, () =>
  withPort111(async () => {
    const { dir, cleanup } = await tempDir();
    const { spawn } = await import('node:child_process');
    const rpcbind = spawn('rpcbind', ['-f'], { stdio: 'ignore' });
    let s: Server | undefined;
    try {
      for (let i = 0; i < 50; i++) {
        if (
          await run('rpcinfo', ['-p', '127.0.0.1']).then(
            () => true,
            () => false,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const disk = randomBytes(rng(9), 4 * MiB);
      const repo = await repoWithPoint(dir, disk);
      s = await startServer(repo);
      assert.match(s.log(), /registered with the portmapper on 111/);
      assert.match((await run('rpcinfo', ['-p', '127.0.0.1'])).stdout, new RegExp(`100003\\s+3\\s+tcp\\s+${s.nfsPort}\\s+nfs`));
      await startSession(repo, 'r');
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', 'raw', 'nfs://127.0.0.1/lifeboat/r/disk0-flat.vmdk'])).stdout) as {
        'virtual-size': number;
      };
      assert.equal(info['virtual-size'], disk.length);
      const done = new Promise((r) => s!.proc.on('close', r));
      s.proc.kill('SIGTERM');
      await done;
      s = undefined;
      assert.doesNotMatch((await run('rpcinfo', ['-p', '127.0.0.1'])).stdout, /100003/, 'unregistered on stop');
    } finally {
      if (s) await kill9(s);
      rpcbind.kill('SIGKILL');
      await new Promise((r) => rpcbind.on('close', r));
      await cleanup();
    }
  }),
);
