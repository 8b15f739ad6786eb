import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { cli, MiB, randomBytes, repoWithPoint, rng, tempDir, withPort111 } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);

/** `instant start` through the CLI; returns the nfs:// URL it printed for the session's flat disk file. */
async function printedFlatUrl(repo: string, name: string): Promise<{ url: string; out: string }> {
  const r = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', name]);
  assert.equal(r.code, 0, r.stderr);
  const url = /nfs:\/\/\S*-flat\.vmdk\S*/.exec(r.stdout)?.[0];
  assert.ok(url, `instant start printed an nfs:// URL for the flat disk: ${r.stdout}`);
  return { url, out: r.stdout };
}

test('instant start: the nfs:// URL it prints works as printed when NFS and MOUNT are on other ports and no portmapper lists them', async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  try {
    const disk = randomBytes(rng(1310), 2 * MiB);
    const repo = await repoWithPoint(dir, disk);
    s = await startServer(repo, ['--no-portmap']);
    const { url, out } = await printedFlatUrl(repo, 'ports');
    assert.equal(url, `nfs://127.0.0.1/lifeboat/ports/disk0-flat.vmdk?nfsport=${s.nfsPort}&mountport=${s.mountPort}`);
    assert.match(out, /no portmapper on 111 lists this server/);
    const cat = await run('nfs-cat', [url], { encoding: 'buffer', maxBuffer: 16 * MiB });
    assert.ok(cat.stdout.equals(disk), 'nfs-cat of the printed URL reads the point byte for byte');
    const dirUrl = url.replace('/disk0-flat.vmdk', '');
    assert.match((await run('nfs-ls', [dirUrl])).stdout, /disk0-flat\.vmdk/);
  } finally {
    if (s) await kill9(s);
    await cleanup();
  }
});

test('instant start: with the portmapper on 111 the printed nfs:// URL is plain and QEMU opens it', () =>
  withPort111(async () => {
    const { dir, cleanup } = await tempDir();
    let s: Server | undefined;
    try {
      const disk = randomBytes(rng(1311), 2 * MiB);
      const repo = await repoWithPoint(dir, disk);
      s = await startServer(repo);
      assert.match(s.log(), /portmapper serving on 111/);
      const { url, out } = await printedFlatUrl(repo, 'plain');
      assert.equal(url, 'nfs://127.0.0.1/lifeboat/plain/disk0-flat.vmdk');
      assert.doesNotMatch(out, /no portmapper on 111/);
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', 'raw', url])).stdout) as { 'virtual-size': number };
      assert.equal(info['virtual-size'], disk.length);
    } finally {
      if (s) await kill9(s);
      await cleanup();
    }
  }));
