import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Guestfish, guestfishEnv } from '../src/files/guestfish.js';
import { processAlive } from '../src/core/process-alive.js';
import { isLifeboatError } from '../src/core/errors.js';

// What real guestfish does that matters here (libguestfs fish/rc.c): `--listen` forks, the parent prints the child's
// pid and exits, and only then does the child bind /tmp/.guestfish-<euid>/socket-<pid>. `--remote=<pid> -- -cmd`
// whose connect fails says "looks like the server is not running" on its standard error and exits 0 (the `-` lets a
// command fail), so a command sent in that window is lost without a failure. This stand-in does the same, with the
// bind delayed by FAKE_GF_BIND_MS, and appends every command it is given to FAKE_GF_CALLS.
const FAKE = `#!${process.execPath}
const net = require('node:net');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const args = process.argv.slice(2);
const dir = '/tmp/.guestfish-' + process.geteuid();
const sock = (pid) => dir + '/socket-' + pid;
if (args[0] === '--listen') {
  const child = spawn(process.execPath, [__filename, '--serve'], { detached: true, stdio: 'ignore' });
  process.stdout.write('GUESTFISH_PID=' + child.pid + '; export GUESTFISH_PID\\n');
  process.exit(0);
} else if (args[0] === '--serve') {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  setTimeout(() => {
    try { fs.unlinkSync(sock(process.pid)); } catch {}
    const server = net.createServer((c) => {
      let text = '';
      c.on('data', (d) => {
        text += d;
        if (!text.includes('\\n')) return;
        const cmd = JSON.parse(text.slice(0, text.indexOf('\\n')));
        fs.appendFileSync(process.env.FAKE_GF_CALLS, JSON.stringify(cmd) + '\\n');
        c.end('0\\n');
        if (cmd[0] === 'exit') server.close(() => process.exit(0));
      });
    });
    server.listen(sock(process.pid));
  }, Number(process.env.FAKE_GF_BIND_MS));
  setTimeout(() => process.exit(0), 60000);
} else {
  const pid = Number(args[0].slice('--remote='.length));
  const cmd = args.slice(2);
  const mayFail = cmd[0].startsWith('-');
  if (mayFail) cmd[0] = cmd[0].slice(1);
  const notRunning = () => {
    process.stderr.write('guestfish: remote: looks like the server is not running\\n');
    process.exit(mayFail ? 0 : 1);
  };
  try { process.kill(pid, 0); } catch { notRunning(); }
  const c = net.connect(sock(pid));
  c.on('error', notRunning);
  c.on('connect', () => c.write(JSON.stringify(cmd) + '\\n'));
  c.on('data', () => process.exit(0));
}
`;

async function withFake(bindMs: number, body: (gf: Guestfish, calls: () => Promise<string[][]>) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-gf-race-'));
  await writeFile(join(dir, 'guestfish'), FAKE);
  await chmod(join(dir, 'guestfish'), 0o755);
  const callsFile = join(dir, 'calls');
  await writeFile(callsFile, '');
  const saved = { PATH: process.env['PATH'], FAKE_GF_BIND_MS: process.env['FAKE_GF_BIND_MS'], FAKE_GF_CALLS: process.env['FAKE_GF_CALLS'] };
  process.env['PATH'] = `${dir}${delimiter}${process.env['PATH'] ?? ''}`;
  process.env['FAKE_GF_BIND_MS'] = String(bindMs);
  process.env['FAKE_GF_CALLS'] = callsFile;
  let gf: Guestfish | undefined;
  try {
    gf = await Guestfish.listen(guestfishEnv(dir), join(dir, 'guestfish.log'));
    const calls = async (): Promise<string[][]> =>
      (await readFile(callsFile, 'utf8'))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as string[]);
    await body(gf, calls);
  } finally {
    await gf?.shutdown(undefined);
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal(gf !== undefined && processAlive(gf.pid), false, 'the stand-in server has ended');
}

test('guestfish --listen: a command sent before the server has bound its socket waits for it and is delivered, not lost', async () => {
  await withFake(600, async (gf, calls) => {
    const r = await gf.remote('add-drive', 'disk0', 'protocol:nbd');
    assert.equal(r.ok, true, r.stderr);
    assert.deepEqual(await calls(), [['add-drive', 'disk0', 'protocol:nbd']]);
    await gf.must('run');
    assert.deepEqual(
      (await calls()).map((c) => c[0]),
      ['add-drive', 'run'],
    );
  });
});

test('guestfish --remote to a server that has ended fails with LFB_ERR_GUESTFS, though the client exits 0', async () => {
  await withFake(0, async (gf) => {
    assert.equal((await gf.remote('get-memsize')).ok, true);
    process.kill(gf.pid, 'SIGKILL');
    for (let i = 0; i < 50 && processAlive(gf.pid); i++) await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(gf.remote('add-drive', 'disk0'), (e: unknown) => isLifeboatError(e, 'LFB_ERR_GUESTFS') && /has ended/.test((e as Error).message));
  });
});
