import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Authenticator } from '../src/auth/index.js';
import { openCatalog } from '../src/catalog/index.js';
import { systemClock } from '../src/core/clock.js';
import { BIN, cli, tempDir, type CliResult } from './helpers.js';

const cliWithInput = (args: string[], input: string, env: Record<string, string> = {}): Promise<CliResult> => cli(args, env, input);

/**
 * The real binary on a pseudo-terminal (util-linux `script`), answering each prompt that appears with the
 * next of `answers`; returns everything the terminal showed.
 */
function cliOnTerminal(args: string[], answers: string[]): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const p = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let prompts = 0;
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout.on('data', (d: Buffer) => {
      screen += d.toString();
      const seen = (screen.match(/password for [^:]*: /g) ?? []).length;
      while (prompts < seen && prompts < answers.length) p.stdin.write(`${answers[prompts++]!}\r`);
    });
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}

function assertFails(r: CliResult, exit: number, code: string): void {
  assert.equal(r.code, exit, `${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`));
}

/** Every byte the state folder holds (the catalog and its WAL). */
async function stateBytes(dir: string): Promise<string> {
  const files = await readdir(dir);
  return (await Promise.all(files.filter((f) => f.startsWith('catalog')).map((f) => readFile(join(dir, f), 'latin1')))).join('');
}

test('user add, list and delete through the real binary; passwords only hashed, bad input refused with its code', async () => {
  const { dir, cleanup } = await tempDir();
  const state = join(dir, 'state');
  try {
    const added = await cliWithInput(['user', 'add', 'alice', '--role', 'admin', '--state-dir', state, '--password-stdin'], 'alice horse battery\n');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, 'added user alice (admin)\n');
    // LIFEBOAT_STATE_DIR stands for --state-dir.
    const env = { LIFEBOAT_STATE_DIR: state };
    const bob = await cliWithInput(['user', 'add', 'bob', '--role', 'viewer', '--password-stdin', '--json'], 'bob horse battery', env);
    assert.equal(bob.code, 0, bob.stderr);
    assert.deepEqual(Object.keys(JSON.parse(bob.stdout) as object), ['name', 'role', 'createdAt']);

    assertFails(await cliWithInput(['user', 'add', 'alice', '--role', 'viewer', '--password-stdin'], 'another password', env), 5, 'LFB_ERR_USER_EXISTS');
    assertFails(await cliWithInput(['user', 'add', 'carol', '--role', 'viewer', '--password-stdin'], 'short\n', env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    assertFails(await cliWithInput(['user', 'add', 'carol', '--role', 'viewer', '--password-stdin'], '\n', env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    assertFails(await cliWithInput(['user', 'add', 'carol', '--role', 'root', '--password-stdin'], 'carol password', env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    assertFails(await cliWithInput(['user', 'add', 'carol', '--password-stdin'], 'carol password', env), 2, 'LFB_ERR_USAGE');
    assertFails(await cliWithInput(['user', 'add', 'no/slash', '--role', 'viewer', '--password-stdin'], 'carol password', env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    // Standard input that is not a terminal, without --password-stdin: refused, not a hidden prompt.
    const noFlag = await cli(['user', 'add', 'carol', '--role', 'viewer'], env);
    assertFails(noFlag, 2, 'LFB_ERR_USAGE');
    assert.match(noFlag.stderr, /--password-stdin/);

    const list = await cli(['user', 'list', '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { name: string; role: string }[]).map((u) => [u.name, u.role]),
      [
        ['alice', 'admin'],
        ['bob', 'viewer'],
      ],
    );
    const text = await cli(['user', 'list'], env);
    assert.match(text.stdout, /^NAME +ROLE +CREATED\nalice +admin +\d{4}-.*\nbob +viewer +\d{4}-/);

    const bytes = await stateBytes(state);
    assert.ok(!bytes.includes('alice horse battery') && !bytes.includes('bob horse battery'), 'no password in the catalog');
    assert.match(bytes, /scrypt\$32768\$8\$1\$/);
    // The stored hash is the one login checks.
    const catalog = await openCatalog(state);
    try {
      const auth = new Authenticator(catalog, { clock: systemClock });
      assert.equal((await auth.login('alice', 'alice horse battery', '127.0.0.1')).role, 'admin');
    } finally {
      await catalog.close();
    }

    const deleted = await cli(['user', 'delete', 'bob'], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assertFails(await cli(['user', 'delete', 'bob'], env), 3, 'LFB_ERR_USER_NOT_FOUND');
    assert.deepEqual(
      (JSON.parse((await cli(['user', 'list', '--json'], env)).stdout) as { name: string }[]).map((u) => u.name),
      ['alice'],
    );
    // A mistyped state folder is an error, not an empty catalog made on the spot.
    assertFails(await cli(['user', 'list', '--state-dir', join(dir, 'typo')]), 2, 'LFB_ERR_INVALID_ARGUMENT');
  } finally {
    await cleanup();
  }
});

test('user set changes a role or a password: the new password logs in, the old one and its console logins no longer work', async () => {
  const { dir, cleanup } = await tempDir();
  const env = { LIFEBOAT_STATE_DIR: dir };
  try {
    const added = await cliWithInput(['user', 'add', 'dana', '--role', 'viewer', '--password-stdin'], 'dana first password\n', env);
    assert.equal(added.code, 0, added.stderr);
    const login = async (password: string): Promise<string> => {
      const catalog = await openCatalog(dir);
      try {
        const auth = new Authenticator(catalog, { clock: systemClock });
        const s = await auth.login('dana', password, '127.0.0.1');
        return `${s.role} ${s.sessionId}`;
      } finally {
        await catalog.close();
      }
    };
    const before = (await login('dana first password')).split(' ')[1]!;

    const role = await cli(['user', 'set', 'dana', '--role', 'operator', '--json'], env);
    assert.equal(role.code, 0, role.stderr);
    assert.deepEqual(JSON.parse(role.stdout), { name: 'dana', role: 'operator', passwordChanged: false });
    assert.match(await login('dana first password'), /^operator /);

    const pw = await cliWithInput(['user', 'set', 'dana', '--password-stdin'], 'dana second password\n', env);
    assert.equal(pw.code, 0, pw.stderr);
    assert.equal(pw.stdout, 'changed user dana: password (its console logins ended)\n');
    assert.match(await login('dana second password'), /^operator /);
    await assert.rejects(login('dana first password'), /LFB_ERR_UNAUTHENTICATED|wrong/i);
    // The console login made with the old password ends with it.
    const catalog = await openCatalog(dir);
    try {
      const auth = new Authenticator(catalog, { clock: systemClock });
      await assert.rejects(
        auth.authenticate({ cookie: `lifeboat_session=${before}` }, 'GET'),
        (e: Error & { code?: string }) => e.code === 'LFB_ERR_UNAUTHENTICATED',
      );
    } finally {
      await catalog.close();
    }

    assertFails(await cli(['user', 'set', 'dana'], env), 2, 'LFB_ERR_USAGE');
    assertFails(await cli(['user', 'set', 'dana', '--role', 'root'], env), 2, 'LFB_ERR_INVALID_ARGUMENT');
    assertFails(await cli(['user', 'set', 'nobody', '--role', 'admin'], env), 3, 'LFB_ERR_USER_NOT_FOUND');
    assertFails(await cliWithInput(['user', 'set', 'dana', '--password-stdin'], 'short\n', env), 2, 'LFB_ERR_INVALID_ARGUMENT');
  } finally {
    await cleanup();
  }
});

test('token create prints a token once (only its hash is kept); it authenticates until revoked or its user is deleted', async () => {
  const { dir, cleanup } = await tempDir();
  const env = { LIFEBOAT_STATE_DIR: dir };
  try {
    assert.equal((await cliWithInput(['user', 'add', 'ops', '--role', 'operator', '--password-stdin'], 'ops password\n', env)).code, 0);
    assertFails(await cli(['token', 'create', '--user', 'nobody'], env), 3, 'LFB_ERR_USER_NOT_FOUND');
    const created = await cli(['token', 'create', '--user', 'ops', '--name', 'nightly script'], env);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^lfb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\n$/);
    const token = created.stdout.trim();
    const id = token.slice(4, 12);
    const second = JSON.parse((await cli(['token', 'create', '--user', 'ops', '--json'], env)).stdout) as { id: string; token: string };
    assert.notEqual(second.token, token);

    const listed = JSON.parse((await cli(['token', 'list', '--json'], env)).stdout) as { id: string; user: string; name: string; lastUsedAt: string | null }[];
    assert.deepEqual(
      listed.map((t) => [t.id, t.user, t.name, t.lastUsedAt]).sort(),
      [
        [id, 'ops', 'nightly script', null],
        [second.id, 'ops', '', null],
      ].sort(),
    );
    const listedText = (await cli(['token', 'list', '--user', 'ops'], env)).stdout;
    assert.ok(!listedText.includes(token.slice(13)), 'token list never shows a secret');
    assert.match(listedText, new RegExp(`^${id}  ops +nightly script +\\S+ +never$`, 'm'));
    assert.ok(!(await stateBytes(dir)).includes(token.slice(13)), 'the secret is not stored');

    const authenticate = async (t: string): Promise<string> => {
      const catalog = await openCatalog(dir);
      try {
        return (await new Authenticator(catalog, { clock: systemClock }).authenticate({ authorization: `Bearer ${t}` }, 'POST')).role;
      } catch (err) {
        return (err as { code: string }).code;
      } finally {
        await catalog.close();
      }
    };
    assert.equal(await authenticate(token), 'operator');
    const revoked = await cli(['token', 'revoke', id], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout, `revoked API token ${id} of ops\n`);
    assert.equal(await authenticate(token), 'LFB_ERR_UNAUTHENTICATED');
    assertFails(await cli(['token', 'revoke', id], env), 3, 'LFB_ERR_TOKEN_NOT_FOUND');

    assert.equal(await authenticate(second.token), 'operator');
    const deleted = await cli(['user', 'delete', 'ops'], env);
    assert.equal(deleted.stdout, 'deleted user ops (1 API token(s) revoked)\n');
    assert.equal(await authenticate(second.token), 'LFB_ERR_UNAUTHENTICATED');
    assert.equal((await cli(['token', 'list'], env)).stdout, 'no API tokens\n');
  } finally {
    await cleanup();
  }
});

test('user add on a terminal asks twice without echo, and refuses two different answers', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ok = await cliOnTerminal(['user', 'add', 'tess', '--role', 'viewer', '--state-dir', dir], ['typed on a tty', 'typed on a tty']);
    assert.equal(ok.code, 0, ok.screen);
    assert.match(ok.screen, /password for tess: \r?\npassword for tess \(again\): \r?\nadded user tess \(viewer\)/);
    assert.ok(!ok.screen.includes('typed on a tty'), `the password was echoed: ${ok.screen}`);

    const differ = await cliOnTerminal(['user', 'add', 'tim', '--role', 'viewer', '--state-dir', dir], ['first answer!', 'second answer']);
    assert.equal(differ.code, 2, differ.screen);
    assert.match(differ.screen, /differ.*\[LFB_ERR_INVALID_ARGUMENT\]/);
    const short = await cliOnTerminal(['user', 'add', 'tim', '--role', 'viewer', '--state-dir', dir], ['short']);
    assert.equal(short.code, 2, short.screen);
    assert.match(short.screen, /at least 8.*\[LFB_ERR_INVALID_ARGUMENT\]/);
    assert.deepEqual(
      (JSON.parse((await cli(['user', 'list', '--json', '--state-dir', dir])).stdout) as { name: string }[]).map((u) => u.name),
      ['tess'],
    );
  } finally {
    await cleanup();
  }
});
