import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, rng, randomBytes, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

test(
  'a job webhook hears of each ended run (JSON of the run), tried again after a 5xx; job create refuses a URL that is not http(s) or carries a password',
  { timeout: 120_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const received: { status: number; body: string }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        // The first delivery fails: the server must try again.
        const status = received.length === 0 ? 503 : 204;
        received.push({ status, body });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    let server: Server | undefined;
    try {
      const img = join(dir, 'd.img');
      await writeFile(img, randomBytes(rng(9), 2 * 1024 * 1024));
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hooks/secret-path`;
      for (const [bad, why] of [
        ['ftp://example.test/x', /http or https/],
        ['not a url', /not a URL/],
        ['http://user:pw@127.0.0.1/x', /no user or password/],
      ] as const) {
        const r = await cli(['job', 'create', 'j', '--repo', repo, '--disk', img, '--webhook', bad]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, why);
      }
      // Given at create, changed by set.
      assert.equal((await cli(['job', 'create', 'j', '--repo', repo, '--disk', img, '--webhook', 'http://127.0.0.1:9/old'])).code, 0);
      const set = await cli(['job', 'set', 'j', '--repo', repo, '--webhook', url]);
      assert.equal(set.code, 0, set.stderr);
      const shown = await cli(['job', 'show', 'j', '--repo', repo]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /^ {2}webhook: +http:\/\/127\.0\.0\.1:\d+\/hooks\/secret-path$/m);
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
      const b = await cli(['backup', 'j', '--repo', repo, '--json']);
      assert.equal(b.code, 0, b.stderr);
      const pointId = (JSON.parse(b.stdout) as { pointId: string }).pointId;
      for (let i = 0; i < 100 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(
        received.map((r) => r.status),
        [503, 204],
      );
      const event = JSON.parse(received[1]!.body) as { event: string; run: { job: string; state: string; pointId: string; trigger: string } };
      assert.equal(event.event, 'run.ended');
      assert.equal(event.run.job, 'j');
      assert.equal(event.run.state, 'succeeded');
      assert.equal(event.run.pointId, pointId);
      assert.equal(event.run.trigger, 'manual');
      assert.equal(received[0]!.body, received[1]!.body);
      // The log names the host, never the secret path.
      assert.doesNotMatch(server.log(), /secret-path/);
      // --no-webhook clears it: the next run posts nothing.
      assert.equal((await cli(['job', 'set', 'j', '--repo', repo, '--no-webhook'])).code, 0);
      assert.equal((await cli(['backup', 'j', '--repo', repo])).code, 0);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(received.length, 2);
    } finally {
      if (server) await kill9(server);
      hook.close();
      await cleanup();
    }
  },
);
