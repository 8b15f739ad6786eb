// A server of an encrypted repository runs its backups in its data mover thread: `serve --password-file` unlocks the
// repository in the server's main thread, and the thread (whose memory of keys is its own) must get the keys to
// seal with. A backup handed to the server and one asked through the control API succeed, their points restore
// bit-exact with the password, and no repository file holds the source's plaintext marker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, expectOk, filesUnder, randomBytes, rng, tempDir, writeAt } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const BS = 256 * 1024;
const MARKER = 'LIFEBOAT-SERVER-PLAINTEXT-MARKER-9e41';

const ok = expectOk;

test('serve --password-file: backups of an encrypted repository run in the server and restore bit-exact', { timeout: 5 * 60_000 }, async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-service-encrypted-');
  const servers: Server[] = [];
  t.after(async () => {
    for (const s of servers) await kill9(s);
    await cleanup();
  });
  const rand = rng(14);
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  const pw = join(dir, 'pw');
  await writeFile(pw, 'a server keeps this in memory\n');
  const env = { LIFEBOAT_PASSWORD_FILE: pw };
  const v = Buffer.alloc(20 * BS + 7);
  randomBytes(rand, 6 * BS).copy(v, BS);
  for (let at = 10 * BS; at < 12 * BS; at += MARKER.length) v.write(MARKER, at, 'latin1');
  await writeFile(disk, v);
  ok(await cli(['repo', 'init', repo, '--block-size', '256K', '--encrypt'], env), 'init');
  ok(await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk], env), 'job');

  // The server has the password only from its flag: not in its environment.
  const server = await startServer(repo, ['--no-portmap', '--no-scheduler', '--password-file', pw]);
  servers.push(server);
  const states: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (i > 0) await writeAt(disk, randomBytes(rand, BS + 3), 4 * BS);
    states.push(await readFile(disk));
    const r = ok(await cli(['backup', 'vm', '--repo', repo, '--json'], env), `backup ${i} handed to the server`);
    assert.equal(typeof (JSON.parse(r.stdout) as { serverRun?: number }).serverRun, 'number', 'the backup ran in the server');
  }
  const points = (JSON.parse(ok(await cli(['points', 'vm', '--repo', repo, '--json'], env), 'points').stdout) as { id: string }[]).map((p) => p.id);
  assert.equal(points.length, 2);
  for (const [i, id] of points.entries()) {
    const to = join(dir, `restored-${i}`);
    ok(await cli(['restore', 'vm', '--repo', repo, '--point', id, '--to', to, '--format', 'raw'], env), `restore ${i}`);
    assert.ok((await readFile(to)).equals(states[i]!), `point ${i} is bit-exact`);
  }
  for (const f of await filesUnder(repo)) assert.equal((await readFile(f)).indexOf(Buffer.from(MARKER)), -1, `${f} holds the plaintext marker`);
});
