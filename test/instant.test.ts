import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NFS_PROGRAM } from '../src/nfs/index.js';
import { XdrWriter, type XdrReader } from '../src/rpc/index.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { cli, randomBytes, rng, tempDir, withPort111, writeAt } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MiB = 1 << 20;

async function digestTree(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const n of (await readdir(dir)).filter((x) => /\.(vbk|vib)$/.test(x)).sort()) h.update(n).update(await readFile(join(dir, n)));
  return h.digest('hex');
}

test('instant recovery: publish points over NFS, write to the overlay, survive kill -9, stop', { timeout: 10 * 60_000 }, () =>
  withPort111(async () => {
    const { dir, cleanup } = await tempDir();
    const rand = rng(44);
    let server: Server | undefined;
    try {
      const repo = join(dir, 'repo');
      const disk = join(dir, 'vm.img');
      const v1 = Buffer.alloc(24 * MiB);
      randomBytes(rand, 6 * MiB).copy(v1, 2 * MiB);
      await writeFile(disk, v1);
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'web', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '2'])).code, 0);
      assert.equal((await cli(['backup', 'web', '--repo', repo])).code, 0);
      const p1 = (JSON.parse((await cli(['points', 'web', '--repo', repo, '--json'])).stdout) as { id: string }[])[0]!.id;
      await writeAt(disk, randomBytes(rand, MiB), 10 * MiB);
      const v2 = await readFile(disk);
      assert.equal((await cli(['backup', 'web', '--repo', repo])).code, 0);
      const jobDir = join(repo, 'jobs', 'web');
      const before = await digestTree(jobDir);

      const bad = await cli(['instant', 'list', '--repo', repo]);
      assert.equal(bad.code, 3);
      assert.match(bad.stderr, /LFB_ERR_SERVER_NOT_RUNNING/);

      // The default portmapper on 111: QEMU's nfs:// driver needs it.
      server = await startServer(repo);
      const start = async (args: string[]): Promise<{ name: string; publishMs: number; disks: { nfsPath: string }[] }> => {
        const r = await cli(['instant', 'start', 'web', '--repo', repo, ...args, '--json']);
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as { name: string; publishMs: number; disks: { nfsPath: string }[] };
      };
      const s1 = await start(['--point', 'latest', '--name', 's1']);
      await start(['--point', 'latest', '--name', 's2']);
      await start(['--point', p1, '--name', 'old', '--cache-dir', join(dir, 'prod-storage')]);
      assert.ok(s1.publishMs < 1000, `published in ${s1.publishMs} ms`);
      assert.equal(s1.disks[0]!.nfsPath, '/lifeboat/s1/disk0-flat.vmdk');
      const dup = await cli(['instant', 'start', 'web', '--repo', repo, '--point', 'latest', '--name', 's1']);
      assert.equal(dup.code, 5, dup.stderr);
      assert.match(dup.stderr, /LFB_ERR_SESSION_EXISTS/);

      const q = `?version=3&nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
      const cat = async (path: string): Promise<Buffer> =>
        (await run('nfs-cat', [`nfs://127.0.0.1${path}${q}`], { encoding: 'buffer', maxBuffer: 64 * MiB })).stdout;
      assert.ok((await cat('/lifeboat/s1/disk0-flat.vmdk')).equals(v2), 'latest point, byte-exact over NFS');
      assert.ok((await cat('/lifeboat/old/disk0-flat.vmdk')).equals(v1), 'the older point');
      const ls = (await run('nfs-ls', [`nfs://127.0.0.1/lifeboat/s1${q}`])).stdout;
      for (const f of ['disk0-flat.vmdk', 'disk0.vmdk', 'web.vmx']) assert.match(ls, new RegExp(f.replace('.', '\\.')));
      assert.match((await cat('/lifeboat/s1/disk0.vmdk')).toString(), /RW 49152 VMFS "disk0-flat.vmdk"/);
      assert.equal((await stat(join(dir, 'prod-storage', 'old', 'files', 'web.vmx'))).isFile(), true, '--cache-dir holds the session');

      // QEMU writes through nfs:// (portmapper on 111); the other session of the same point does not see it.
      const url = 'nfs://127.0.0.1/lifeboat/s1/disk0-flat.vmdk';
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', 'raw', url])).stdout) as { 'virtual-size': number };
      assert.equal(info['virtual-size'], 24 * MiB);
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 5000000 70000', '-c', 'flush', url]);
      const expected = Buffer.from(v2);
      expected.fill(0x5a, 5_000_000, 5_070_000);
      assert.ok((await cat('/lifeboat/s1/disk0-flat.vmdk')).equals(expected), 'the write is visible over NFS');
      assert.ok((await cat('/lifeboat/s2/disk0-flat.vmdk')).equals(v2), 'another session of the same point is untouched');

      // Hypervisor files: a guarded create (ESXi's .lck) succeeds once.
      await writeFile(join(dir, 'lck'), 'esx01');
      await run('nfs-cp', [join(dir, 'lck'), `nfs://127.0.0.1/lifeboat/s1/.lck-0000000000000001${q}`]);
      await assert.rejects(run('nfs-cp', [join(dir, 'lck'), `nfs://127.0.0.1/lifeboat/s1/.lck-0000000000000001${q}`]), 'second guarded create fails');

      // Retention never destroys a point being served.
      await writeAt(disk, randomBytes(rand, MiB), 3 * MiB);
      const b3 = await cli(['backup', 'web', '--repo', repo]);
      assert.equal(b3.code, 0, b3.stderr);
      assert.match(b3.stdout, /retention: postponed \(point held by session-old\)/);
      const pts = JSON.parse((await cli(['points', 'web', '--repo', repo, '--json'])).stdout) as { id: string }[];
      assert.ok(
        pts.some((p) => p.id === p1),
        'the held point is still there',
      );
      const afterBackup = await digestTree(jobDir);

      // A handle taken before a kill -9 still works after the restart, and the overlay kept its flushed data.
      const handleBefore = await lookupHandle(server.nfsPort, server.mountPort, ['s1', 'disk0-flat.vmdk']);
      await kill9(server);
      server = await startServer(repo);
      const c2 = await RpcTestClient.connect(server.nfsPort);
      const ga = await c2.call(NFS_PROGRAM, 3, 1, new XdrWriter().opaque(handleBefore.handle).toBuffer());
      assert.equal(status(ga), 0, 'the old handle is not stale');
      ga.u32();
      ga.u32();
      ga.u32();
      ga.u32();
      ga.u32();
      assert.equal(ga.u64(), BigInt(24 * MiB));
      ga.u64();
      ga.u64();
      ga.u64();
      assert.equal(ga.u64(), handleBefore.fileid, 'same fileid');
      c2.close();
      const q2 = `?version=3&nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
      const afterRestart = (await run('nfs-cat', [`nfs://127.0.0.1/lifeboat/s1/disk0-flat.vmdk${q2}`], { encoding: 'buffer', maxBuffer: 64 * MiB })).stdout;
      assert.ok(afterRestart.equals(expected), 'flushed overlay data survived kill -9');
      // The blocks decoded before the kill were kept on local storage: the restarted server read them from there.
      const listed = (await cli(['instant', 'list', '--repo', repo])).stdout;
      assert.match(listed, /^memory cache: .+ of 512.0 MiB \(\d+ blocks\)/m);
      const kept = /^disk cache: .+ of 2.0 GiB \((\d+) blocks\) in .+cache\/blocks, (\d+) hits/m.exec(listed);
      assert.ok(kept && Number(kept[1]) > 0 && Number(kept[2]) > 0, listed);

      // Stop: the folder and overlay go, the hold is released, backup files never changed.
      assert.equal((await cli(['instant', 'stop', 's1', '--repo', repo])).code, 0);
      assert.equal((await cli(['instant', 'stop', 'old', '--repo', repo])).code, 0);
      const list = JSON.parse((await cli(['instant', 'list', '--repo', repo, '--json'])).stdout) as { name: string }[];
      assert.deepEqual(
        list.map((s) => s.name),
        ['s2'],
      );
      await assert.rejects(stat(join(repo, 'cache', 'instant', 's1')));
      await assert.rejects(stat(join(dir, 'prod-storage', 'old')));
      assert.doesNotMatch((await run('nfs-ls', [`nfs://127.0.0.1/lifeboat${q2}`])).stdout, /\bs1\b/);
      assert.equal(await digestTree(jobDir), afterBackup, 'instant recovery never wrote a backup file');
      assert.notEqual(before, afterBackup);
    } finally {
      if (server) await kill9(server);
      await cleanup();
    }
  }),
);

function status(r: XdrReader): number {
  r.u32();
  r.u32();
  r.u32();
  r.opaque(400);
  assert.equal(r.u32(), 0);
  return r.u32();
}

/** MNT /lifeboat then LOOKUP each name: the handle and fileid a client would keep. */
async function lookupHandle(nfsPort: number, mountPort: number, names: string[]): Promise<{ handle: Buffer; fileid: bigint }> {
  const m = await RpcTestClient.connect(mountPort);
  const r = await m.call(100005, 3, 1, new XdrWriter().string('/lifeboat').toBuffer());
  assert.equal(status(r), 0);
  let h = Buffer.from(r.opaque(64));
  m.close();
  const c = await RpcTestClient.connect(nfsPort);
  let fileid = 0n;
  for (const n of names) {
    const l = await c.call(NFS_PROGRAM, 3, 3, new XdrWriter().opaque(h).string(n).toBuffer());
    assert.equal(status(l), 0, `LOOKUP ${n}`);
    h = Buffer.from(l.opaque(64));
    assert.equal(l.bool(), true);
    for (let i = 0; i < 5; i++) l.u32();
    l.u64();
    l.u64();
    l.u64();
    l.u64();
    fileid = l.u64();
  }
  c.close();
  return { handle: h, fileid };
}
