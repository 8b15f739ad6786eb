// A backup copy of an encrypted repository stays encrypted: `copy create` makes a missing target with the source's
// key (as `repo init --key-from` does), refuses an existing target that cannot open the source's sealed blocks
// before it records anything, and the copied points restore bit-exact from the target alone with the password,
// while no target file holds the plaintext. CLI end to end, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, expectOk, filesUnder, randomBytes, rng, tempDir, writeAt } from './helpers.js';

const BS = 256 * 1024;
const MARKER = 'LIFEBOAT-COPY-PLAINTEXT-MARKER-51c2';

const ok = expectOk;

test('copy of an encrypted repository: the target is made with its key, a plain target is refused, points restore from the target alone', async (t) => {
  const { dir, cleanup } = await tempDir('lifeboat-copy-encrypted-');
  t.after(cleanup);
  const rand = rng(51);
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  const pw = join(dir, 'pw');
  await writeFile(pw, 'copy me safely\n');
  const env = { LIFEBOAT_PASSWORD_FILE: pw };
  const v1 = Buffer.alloc(24 * BS + 99);
  randomBytes(rand, 8 * BS).copy(v1, 2 * BS);
  for (let at = 12 * BS; at < 14 * BS; at += MARKER.length) v1.write(MARKER, at, 'latin1');
  await writeFile(disk, v1);

  ok(await cli(['repo', 'init', repo, '--block-size', '256K', '--encrypt'], env), 'init');
  ok(await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk], env), 'job');
  const states: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (i > 0) await writeAt(disk, randomBytes(rand, BS + 5), 5 * BS);
    states.push(await readFile(disk));
    ok(await cli(['backup', 'vm', '--repo', repo], env), `backup ${i}`);
  }

  // An existing plain repository cannot hold the source's sealed blocks: refused at create, nothing recorded.
  const plain = join(dir, 'plain');
  ok(await cli(['repo', 'init', plain, '--block-size', '256K']), 'plain target');
  const refused = await cli(['copy', 'create', 'to-plain', '--repo', repo, '--to-repo', plain, '--job', 'vm'], env);
  assert.equal(refused.code, 5, refused.stderr);
  assert.match(refused.stderr, /LFB_ERR_KEY_MISMATCH/);
  assert.match(refused.stderr, /--key-from/);
  assert.deepEqual(await readdir(join(plain, 'jobs')), [], 'no job was made in the plain target');
  const listed = await cli(['copy', 'list', '--repo', repo, '--json'], env);
  assert.deepEqual((JSON.parse(ok(listed, 'copy list').stdout) as unknown[]).length, 0, 'no copy job was recorded');

  // A missing target is made encrypted, with the source's key.
  const target = join(dir, 'offsite');
  ok(await cli(['copy', 'create', 'off', '--repo', repo, '--to-repo', target, '--job', 'vm'], env), 'copy create');
  const configOf = async (r: string): Promise<{ encryption?: { keyId: string } }> =>
    (JSON.parse(await readFile(join(r, 'lifeboat.json'), 'utf8')) as { body: { encryption?: { keyId: string } } }).body;
  const [sourceConfig, targetConfig] = [await configOf(repo), await configOf(target)];
  assert.ok(targetConfig.encryption, 'the target is encrypted');
  assert.equal(targetConfig.encryption.keyId, sourceConfig.encryption?.keyId, 'with the source key');
  ok(await cli(['copy', 'run', 'off', '--repo', repo], env), 'copy run');

  // The target alone: its points, restored with the password, are the source disk at each backup.
  const copied = (JSON.parse(ok(await cli(['points', 'vm', '--repo', target, '--json'], env), 'points of the target').stdout) as { id: string }[]).map(
    (p) => p.id,
  );
  assert.equal(copied.length, 2);
  for (const [i, id] of copied.entries()) {
    const to = join(dir, `restored-${i}`);
    ok(await cli(['restore', 'vm', '--repo', target, '--point', id, '--to', to, '--format', 'raw'], env), `restore ${i} from the target`);
    assert.ok((await readFile(to)).equals(states[i]!), `point ${i} from the target is bit-exact`);
  }
  const noPassword = await cli(['points', 'vm', '--repo', target]);
  assert.match(noPassword.stderr, /LFB_ERR_PASSWORD_REQUIRED/);
  for (const f of await filesUnder(target)) assert.equal((await readFile(f)).indexOf(Buffer.from(MARKER)), -1, `${f} holds the plaintext marker`);
});
