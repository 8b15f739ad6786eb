/**
 * Instant-recovery read benchmark: Lifeboat's NFS datastore (reading a
 * compressed restore point) against nfs-ganesha 4 (VFS FSAL) exporting the
 * same disk as a plain raw file. Same machine, same clients, one run.
 *
 *   npm run bench:nfs     (needs root: rpcbind and ganesha on 111/2049)
 *
 * Also times `instant start` of a 1 TiB sparse disk with a 10-point chain.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { MiB, best, fromMemory, lifeboat, seconds, waitFor, work, bin } from './bench-util.js';
import { existsSync, linkSync, mkdirSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { XdrWriter } from '../src/rpc/xdr.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { prng } from '../src/testing/prng.js';
import { buildSampleImage } from './sample-image.js';

/** Random 4 KiB READs with 32 in flight, from one TCP connection: IOPS. */
const AUTH = { cred: { stamp: 1, machineName: 'bench', uid: 0, gid: 0, gids: [0] } };

async function randomReads(mountPort: number, nfsPort: number, exportPath: string, names: string[], size: number): Promise<number> {
  const m = await RpcTestClient.connect(mountPort);
  const mr = await m.call(100005, 3, 1, new XdrWriter().string(exportPath).toBuffer(), AUTH);
  mr.u32();
  mr.u32();
  mr.u32();
  mr.opaque(400);
  mr.u32();
  if (mr.u32() !== 0) throw new Error('MNT failed');
  let h = Buffer.from(mr.opaque(64));
  m.close();
  const c = await RpcTestClient.connect(nfsPort);
  for (const n of names) {
    const l = await c.call(100003, 3, 3, new XdrWriter().opaque(h).string(n).toBuffer(), AUTH);
    l.u32();
    l.u32();
    l.u32();
    l.opaque(400);
    l.u32();
    if (l.u32() !== 0) throw new Error(`LOOKUP ${n} failed`);
    h = Buffer.from(l.opaque(64));
  }
  const rand = prng(5);
  const total = 20000;
  let issued = 0;
  const t0 = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (issued < total) {
      issued += 1;
      const off = Math.floor(rand() * (size / 4096)) * 4096;
      const r = await c.call(100003, 3, 6, new XdrWriter().opaque(h).u64(BigInt(off)).u32(4096).toBuffer(), AUTH);
      r.u32();
      r.u32();
      r.u32();
      r.opaque(400);
      r.u32();
      if (r.u32() !== 0) throw new Error('READ failed');
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  c.close();
  return total / secs;
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  let image = join(work, 'vm.img');
  if (!existsSync(image)) {
    image = join(work, 'nfs.img');
    buildSampleImage(image, 1024 * MiB, 700 * MiB);
  }
  const size = statSync(image).size;
  const repo = join(work, 'nfs-repo');
  rmSync(repo, { recursive: true, force: true });
  lifeboat(['repo', 'init', repo]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image]);
  lifeboat(['backup', 'vm', '--repo', repo]);
  const exportDir = join(work, 'ganesha-export');
  rmSync(exportDir, { recursive: true, force: true });
  mkdirSync(exportDir);
  linkSync(image, join(exportDir, 'img.raw'));
  mkdirSync('/run/rpcbind', { recursive: true });
  const conf = join(work, 'ganesha.conf');
  writeFileSync(
    conf,
    `NFS_CORE_PARAM { Protocols = 3; Bind_addr = 127.0.0.1; NFS_Port = 2049; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; mount_path_pseudo = true; }
EXPORT { Export_Id = 1; Path = ${exportDir}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP; FSAL { Name = VFS; } }
LOG { Default_Log_Level = EVENT; }
`,
  );
  const procs: ChildProcess[] = [];
  const results: Record<string, Record<string, number>> = { ganesha: {}, lifeboat: {} };
  try {
    procs.push(spawn('rpcbind', ['-f'], { stdio: 'ignore' }));
    await waitFor(() => spawnSync('rpcinfo', ['-p', '127.0.0.1']).status === 0, 'rpcbind');
    const ganesha = spawn('ganesha.nfsd', ['-F', '-f', conf, '-L', join(work, 'ganesha.log'), '-p', join(work, 'ganesha.pid')], { stdio: 'ignore' });
    procs.push(ganesha);
    await waitFor(() => /100003\s+3\s+tcp\s+2049/.test(spawnSync('rpcinfo', ['-p', '127.0.0.1']).stdout.toString()), 'ganesha');
    // Each side's files (the raw file, or the repository) are in the page cache before each figure (fromMemory).
    const measure = (who: 'ganesha' | 'lifeboat', url: string, explicit: string): void => {
      const files = [who === 'ganesha' ? image : repo];
      fromMemory(files);
      results[who]!['nfs-cat MB/s'] = size / 1e6 / best(() => seconds('sh', ['-c', `nfs-cat '${url}${explicit}' > /dev/null`]));
      fromMemory(files);
      results[who]!['qemu-img convert MB/s'] =
        size / 1e6 / best(() => seconds('qemu-img', ['convert', '-n', '-f', 'raw', url, '--target-image-opts', `driver=null-co,size=${size}`]));
    };
    measure('ganesha', 'nfs://127.0.0.1/export/img.raw', '?version=3&nfsport=2049&mountport=20048');
    fromMemory([image]);
    results['ganesha']!['random 4K IOPS'] = await randomReads(20048, 2049, '/export', ['img.raw'], size);
    ganesha.kill('SIGTERM');
    await new Promise((r) => ganesha.on('close', r));

    const server = spawn(process.execPath, [bin, 'serve', '--repo', repo, '--bind', '127.0.0.1', '--nfs-port', '12049', '--mount-port', '11058'], {
      stdio: 'ignore',
    });
    procs.push(server);
    await waitFor(() => existsSync(join(repo, 'instant', 'control.json')), 'lifeboat serve');
    lifeboat(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'bench']);
    const url = 'nfs://127.0.0.1/lifeboat/bench/disk0-flat.vmdk';
    measure('lifeboat', url, '?version=3&nfsport=12049&mountport=11058');
    fromMemory([repo]);
    results['lifeboat']!['random 4K IOPS'] = await randomReads(11058, 12049, '/lifeboat', ['bench', 'disk0-flat.vmdk'], size);

    // instant start of a 1 TiB sparse disk with a 10-point chain.
    const big = join(work, 'tib.img');
    rmSync(big, { force: true });
    writeFileSync(big, '');
    truncateSync(big, 1024 * 1024 * MiB);
    lifeboat(['job', 'create', 'tib', '--repo', repo, '--disk', big, '--retain-points', '20']);
    const rand = prng(3);
    for (let i = 0; i < 10; i++) {
      const fd = openSync(big, 'r+');
      for (let k = 0; k < 20; k++) writeSync(fd, Buffer.alloc(MiB, i + k + 1), 0, MiB, Math.floor(rand() * 1024 * 1024) * MiB);
      closeSync(fd);
      lifeboat(['backup', 'tib', '--repo', repo]);
    }
    const started = JSON.parse(lifeboat(['instant', 'start', 'tib', '--repo', repo, '--point', 'latest', '--name', 'tib', '--json'])) as { publishMs: number };
    results['lifeboat']!['instant start 1 TiB, 10 points (ms)'] = started.publishMs;
    server.kill('SIGTERM');
    await new Promise((r) => server.on('close', r));
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
  console.log(`\n${(size / MiB).toFixed(0)} MiB disk: ganesha serves the raw file; Lifeboat serves the compressed restore point (zstd:1)`);
  console.log('measure                      ganesha     lifeboat   lifeboat/ganesha');
  for (const k of ['nfs-cat MB/s', 'qemu-img convert MB/s', 'random 4K IOPS']) {
    const g = results['ganesha']![k]!;
    const l = results['lifeboat']![k]!;
    console.log(`${k.padEnd(27)}${g.toFixed(0).padStart(9)}  ${l.toFixed(0).padStart(11)}  ${(l / g).toFixed(2).padStart(17)}`);
  }
  console.log(`instant start, 1 TiB sparse disk, 10-point chain: ${results['lifeboat']!['instant start 1 TiB, 10 points (ms)']} ms`);
  writeFileSync(join(work, 'nfs-results.json'), JSON.stringify(results, null, 2));
}

await main();
