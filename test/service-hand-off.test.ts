import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, cli, rng, randomBytes, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

test(
  'backup while a server runs for the repository is a run of the server: recorded, followed, stopped by Ctrl-C, errors with their codes',
  { timeout: 180_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    let server: Server | undefined;
    try {
      const small = join(dir, 'small.img');
      await writeFile(small, randomBytes(rng(3), 4 * 1024 * 1024));
      const big = join(dir, 'big.img');
      await writeFile(big, randomBytes(rng(4), 384 * 1024 * 1024));
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'small', '--repo', repo, '--disk', small])).code, 0);
      assert.equal((await cli(['job', 'create', 'big', '--repo', repo, '--disk', big])).code, 0);
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111

      const human = await cli(['backup', 'small', '--repo', repo]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^full \w{12} → .*\.vbk \(first run of the job\), run 1 of the server$/m);
      const json = await cli(['backup', 'small', '--repo', repo, '--json']);
      assert.equal(json.code, 0, json.stderr);
      const r = JSON.parse(json.stdout) as { serverRun: number; kind: string; changes: { method: string }[] };
      assert.equal(r.serverRun, 2);
      assert.equal(r.kind, 'increment');
      assert.equal(r.changes[0]!.method, 'hash');
      assert.match(server.log(), /<6>lifeboat run=2 job=small .*state=succeeded trigger=manual/);

      // A failure comes back with its code and exit status.
      const missing = await cli(['backup', 'nope', '--repo', repo]);
      assert.equal(missing.code, 3, missing.stderr);
      assert.match(missing.stderr, /LFB_ERR_JOB_NOT_FOUND/);

      // Ctrl-C stops the server's run at its next safe point; the CLI ends as a local run would.
      const child = spawn(process.execPath, [BIN, 'backup', 'big', '--repo', repo], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
      // At once: on a quiet machine the 384 MiB run ends about half a second after it starts (it did, in CI, while
      // this waited 300 ms more), and a Ctrl-C that comes after the end has nothing to stop.
      for (let i = 0; i < 800 && !/service: run started \{"run":3/.test(server.log()); i++) await new Promise((res) => setTimeout(res, 5));
      child.kill('SIGINT');
      assert.equal(await exited, 130, err);
      assert.match(err, /LFB_ERR_INTERRUPTED/);
      assert.match(server.log(), /<5>lifeboat run=3 job=big .*state=stopped/);
      // Nothing left locked: the next run goes through the server and succeeds.
      const again = await cli(['backup', 'small', '--repo', repo]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /run 4 of the server/);
    } finally {
      if (server) await kill9(server);
      await cleanup();
    }
  },
);
