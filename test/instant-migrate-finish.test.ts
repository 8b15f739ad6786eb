import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cli, rng, randomBytes, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** qemu-io in interactive mode: one NBD connection held open across commands. */
class HeldClient {
  private out = '';
  readonly proc: ChildProcess;
  constructor(url: string) {
    this.proc = spawn('qemu-io', ['-f', 'raw', url], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.proc.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** Runs one command; resolves with what it printed once a line matches `done`. */
  async command(cmd: string, done: RegExp): Promise<string> {
    const from = this.out.length;
    this.proc.stdin!.write(`${cmd}\n`);
    for (let i = 0; i < 300; i++) {
      const said = this.out.slice(from);
      if (done.test(said)) return said;
      if (this.proc.exitCode !== null) return said;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`qemu-io did not answer "${cmd}": ${this.out.slice(from)}`);
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const gone = new Promise((r) => this.proc.once('close', r));
    this.proc.kill('SIGKILL');
    await gone;
  }
}

const sha = async (dir: string): Promise<string[]> =>
  Promise.all(
    (await readdir(dir))
      .filter((n) => /\.(vbk|vib)$/.test(n))
      .sort()
      .map(async (n) =>
        createHash('sha256')
          .update(await readFile(join(dir, n)))
          .digest('hex'),
      ),
  );

test(
  'instant migrate --finish refuses while an NBD or NFS client is attached, lists them; --force closes them and nothing acknowledged after is lost',
  { timeout: 180_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    let server: Server | undefined;
    let held: HeldClient | undefined;
    try {
      const source = randomBytes(rng(7), 8 * MiB);
      const img = join(dir, 'd0.img');
      await writeFile(img, source);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', img])).code, 0);
      assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
      const before = await sha(join(repo, 'jobs', 'vm'));
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
      assert.equal((await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 's'])).code, 0);
      const prod = join(dir, 'prod');
      const m = await cli(['instant', 'migrate', 's', '--repo', repo, '--to', prod]);
      assert.equal(m.code, 0, m.stderr);
      assert.match(m.stdout, /synced 100%/);

      // A client holding its NBD connection, with a write acknowledged before the finish.
      held = new HeldClient(`nbd://127.0.0.1:${server.nbdPort}/s/disk0`);
      assert.match(await held.command(`write -P 0x41 0 ${MiB}`, /wrote|failed/), /wrote 1048576\/1048576/);
      const refused = await cli(['instant', 'migrate', 's', '--repo', repo, '--finish']);
      assert.equal(refused.code, 5, refused.stderr);
      assert.match(refused.stderr, /LFB_ERR_CLIENTS_ATTACHED/);
      assert.match(refused.stderr, /NBD 127\.0\.0\.1:\d+ on disk0/);
      assert.match(refused.stderr, /--force/);
      // Still serving and writable: the refusal changed nothing.
      assert.match(await held.command(`write -P 0x43 ${2 * MiB} 65536`, /wrote|failed/), /wrote 65536\/65536/);

      // An NFS client that just read the disk counts as attached too.
      const url = `nfs://127.0.0.1/lifeboat/s/disk0-flat.vmdk?nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
      await run('nfs-cat', [url], { encoding: 'buffer', maxBuffer: 64 * MiB });
      const both = await cli(['instant', 'migrate', 's', '--repo', repo, '--finish', '--json']);
      assert.equal(both.code, 5, both.stderr);
      assert.match(both.stderr, /NFS 127\.0\.0\.1 on disk0/);
      assert.match(both.stderr, /NBD 127\.0\.0\.1:\d+ on disk0/);

      const forced = await cli(['instant', 'migrate', 's', '--repo', repo, '--finish', '--force', '--json']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.equal((JSON.parse(forced.stdout) as { migration: { state: string } }).migration.state, 'done');
      // The held connection was closed: a write after the final copy began is never acknowledged.
      const late = await held.command(`write -P 0x42 ${MiB} ${MiB}`, /wrote|failed|error/i);
      assert.doesNotMatch(late, /wrote/);
      // A new connection may read, but every write is refused.
      const fresh = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x44 0 4096', `nbd://127.0.0.1:${server.nbdPort}/s/disk0`]).then(
        (r) => r.stdout + r.stderr,
        (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
      );
      assert.doesNotMatch(fresh, /wrote/);
      assert.match(fresh, /Operation not permitted|failed/);

      // The production file holds every acknowledged write and nothing else.
      const expected = Buffer.from(source);
      expected.fill(0x41, 0, MiB);
      expected.fill(0x43, 2 * MiB, 2 * MiB + 65536);
      const migrated = await readFile(join(prod, 'vm-disk0.raw'));
      assert.equal(migrated.length, expected.length);
      assert.ok(migrated.equals(expected), 'the migrated disk is the acknowledged state');

      // A restart keeps the finished session read-only.
      await kill9(server);
      server = await startServer(repo, ['--no-portmap']);
      const after = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x45 0 4096', `nbd://127.0.0.1:${server.nbdPort}/s/disk0`]).then(
        (r) => r.stdout + r.stderr,
        (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
      );
      assert.doesNotMatch(after, /wrote/);
      assert.equal((await cli(['instant', 'stop', 's', '--repo', repo])).code, 0);
      assert.deepEqual(await sha(join(repo, 'jobs', 'vm')), before);
    } finally {
      await held?.close();
      if (server) await kill9(server);
      await cleanup();
    }
  },
);

test('instant migrate --force without --finish is a usage error', async () => {
  const r = await cli(['instant', 'migrate', 's', '--repo', '/nonexistent', '--force']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--force goes with --finish/);
});
