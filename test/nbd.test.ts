import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cli, randomBytes, rng, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MiB = 1 << 20;

async function backupDigest(jobDir: string): Promise<string> {
  const h = createHash('sha256');
  for (const n of (await readdir(jobDir)).filter((x) => /\.(vbk|vib)$/.test(x)).sort()) h.update(await readFile(join(jobDir, n)));
  return h.digest('hex');
}

test('nbd: nbdinfo, nbdcopy, qemu-img and nbd-client against session disks; NBD and NFS share one overlay', { timeout: 5 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  try {
    // 12 MiB with data in the first 3 MiB and at 9 MiB: holes in between.
    const disk = Buffer.alloc(12 * MiB);
    randomBytes(rng(1), 3 * MiB).copy(disk, 0);
    randomBytes(rng(2), MiB).copy(disk, 9 * MiB);
    await writeFile(join(dir, 'vm.img'), disk);
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    assert.equal((await cli(['job', 'create', 'db', '--repo', repo, '--disk', join(dir, 'vm.img')])).code, 0);
    assert.equal((await cli(['backup', 'db', '--repo', repo])).code, 0);
    const before = await backupDigest(join(repo, 'jobs', 'db'));
    assert.equal((await cli(['restore', 'db', '--repo', repo, '--point', 'latest', '--to', join(dir, 'restored.raw')])).code, 0);
    const restored = await readFile(join(dir, 'restored.raw'));

    s = await startServer(repo, ['--no-portmap']);
    assert.equal((await cli(['instant', 'start', 'db', '--repo', repo, '--point', 'latest', '--name', 's'])).code, 0);
    const uri = `nbd://127.0.0.1:${s.nbdPort}/s/disk0`;

    const info = JSON.parse((await run('nbdinfo', ['--json', uri])).stdout) as {
      exports: { 'export-size': number; contexts: string[]; can_multi_conn: boolean }[];
    };
    assert.equal(info.exports[0]!['export-size'], 12 * MiB);
    assert.ok(info.exports[0]!.contexts.includes('base:allocation'));
    const list = (await run('nbdinfo', ['--list', `nbd://127.0.0.1:${s.nbdPort}`])).stdout;
    assert.match(list, /export="s\/disk0"/);
    const map = (await run('nbdinfo', ['--map', uri])).stdout;
    assert.match(map, /^\s*0\s+3145728\s+0\s+data/m, map);
    assert.match(map, /^\s*3145728\s+6291456\s+3\s+hole,zero/m, map);
    const clientList = (await run('nbd-client', ['-l', '127.0.0.1', String(s.nbdPort)])).stdout;
    assert.match(clientList, /s\/disk0/);

    await run('nbdcopy', [uri, join(dir, 'copy.raw')]);
    assert.ok((await readFile(join(dir, 'copy.raw'))).equals(restored), 'nbdcopy equals lifeboat restore');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, join(dir, 'conv.raw')]);
    assert.ok((await readFile(join(dir, 'conv.raw'))).equals(restored), 'qemu-img convert nbd:// equals lifeboat restore');

    // Writes over NBD are seen over NFS (one overlay), and the reverse.
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x6b 5242880 1048576', '-c', 'write -P 0x2c 1000 3000', '-c', 'flush', uri]);
    const q = `?version=3&nfsport=${s.nfsPort}&mountport=${s.mountPort}`;
    const viaNfs = (await run('nfs-cat', [`nfs://127.0.0.1/lifeboat/s/disk0-flat.vmdk${q}`], { encoding: 'buffer', maxBuffer: 64 * MiB })).stdout;
    const expected = Buffer.from(restored);
    expected.fill(0x6b, 5 * MiB, 6 * MiB);
    expected.fill(0x2c, 1000, 4000);
    assert.ok(viaNfs.equals(expected), 'NFS sees what NBD wrote');
    const after = (await run('nbdinfo', ['--map', uri])).stdout;
    assert.match(after, /5242880\s+\d+\s+0\s+data/, 'written granules are data in the map');
    await run('qemu-io', ['-f', 'raw', '-c', 'write -z 0 65536', '-c', 'read -P 0 0 65536', uri]);

    // A broken frame closes that connection only.
    await new Promise<void>((resolve) => {
      const c = connect(s!.nbdPort, '127.0.0.1', () => c.write(Buffer.alloc(64, 0xff)));
      c.on('error', () => undefined);
      c.resume(); // consume the server's greeting, or 'close' never comes
      c.on('close', () => resolve());
    });
    assert.equal(JSON.parse((await run('nbdinfo', ['--json', uri])).stdout).exports[0]['export-size'], 12 * MiB, 'still serving');
    assert.equal(await backupDigest(join(repo, 'jobs', 'db')), before, 'backup files untouched');
  } finally {
    if (s) await kill9(s);
    await cleanup();
  }
});
