import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { cli, MiB, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);

/** The server's log lines (stderr, interleaved with its stdout) that come from its logger. */
function logLines(s: Server): string[] {
  return s
    .log()
    .split('\n')
    .filter((l) => / lifeboat (debug|info|warn|error): /.test(l));
}

/** Waits until a log line matches `re` (the server logs a closed connection a moment after the client left). */
async function waitForLine(s: Server, re: RegExp): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const line = logLines(s).find((l) => re.test(l));
    if (line) return line;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no log line matches ${re}:\n${s.log()}`);
}

/** The JSON fields a log line ends with. */
function fieldsOf(line: string): Record<string, unknown> {
  const at = line.indexOf(' {');
  assert.ok(at > 0, `the line has fields: ${line}`);
  return JSON.parse(line.slice(at + 1)) as Record<string, unknown>;
}

test('serve with LIFEBOAT_LOG=debug: timestamped lines name the session, disk and client of NBD and NFS connections', async () => {
  const { dir, cleanup } = await tempDir();
  let s: Server | undefined;
  const before = process.env['LIFEBOAT_LOG'];
  try {
    const repo = await repoWithPoint(dir, randomBytes(rng(1410), 1 * MiB));
    process.env['LIFEBOAT_LOG'] = 'debug';
    s = await startServer(repo, ['--no-portmap']);
    if (before === undefined) delete process.env['LIFEBOAT_LOG'];
    else process.env['LIFEBOAT_LOG'] = before;
    assert.equal(fieldsOf(await waitForLine(s, /serve: started/))['nbdPort'], s.nbdPort);
    const started = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'logs']);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(fieldsOf(await waitForLine(s, /instant recovery: session started/))['session'], 'logs');

    const info = await run('nbdinfo', [`nbd://127.0.0.1:${s.nbdPort}/logs/disk0`]);
    assert.match(info.stdout, /export-size:\s+1048576/);
    const attached = fieldsOf(await waitForLine(s, /nbd: client attached/));
    assert.equal(attached['export'], 'logs/disk0');
    assert.equal(attached['session'], 'logs');
    assert.equal(attached['disk'], 'disk0');
    assert.match(String(attached['client']), /^127\.0\.0\.1:\d+$/);
    const closed = fieldsOf(await waitForLine(s, /nbd: connection closed.*"export"/));
    assert.equal(closed['client'], attached['client'], 'the closed line names the same client');

    await run('nfs-ls', [`nfs://127.0.0.1/lifeboat?nfsport=${s.nfsPort}&mountport=${s.mountPort}`]);
    const nfsOpened = fieldsOf(await waitForLine(s, /rpc: connection opened.*"protocol":"nfs"/));
    assert.match(String(nfsOpened['client']), /^127\.0\.0\.1:\d+$/);
    const nfsClosed = fieldsOf(await waitForLine(s, /rpc: connection closed.*"protocol":"nfs"/));
    assert.ok(Number(nfsClosed['calls']) >= 1, 'the NFS connection made calls');
    await waitForLine(s, /rpc: connection opened.*"protocol":"mount"/);

    // A client asking for an export that does not exist: the line names the export and the client.
    await assert.rejects(run('nbdinfo', [`nbd://127.0.0.1:${s.nbdPort}/logs/nope`]));
    const missing = fieldsOf(await waitForLine(s, /nbd: no such export/));
    assert.equal(missing['export'], 'logs/nope');
    assert.match(String(missing['client']), /^127\.0\.0\.1:\d+$/);

    const lines = logLines(s);
    assert.ok(lines.length >= 6, `debug lines were logged:\n${s.log()}`);
    for (const l of lines) {
      const stamp = /^(\S+) lifeboat /.exec(l)?.[1];
      assert.ok(stamp !== undefined && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(stamp), `the line starts with an ISO time: ${l}`);
      assert.ok(Math.abs(Date.parse(stamp) - Date.now()) < 10 * 60_000, `the time is now: ${l}`);
    }
  } finally {
    if (before === undefined) delete process.env['LIFEBOAT_LOG'];
    else process.env['LIFEBOAT_LOG'] = before;
    if (s) await kill9(s);
    await cleanup();
  }
});
