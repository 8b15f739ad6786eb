// The shipped systemd unit (contrib/lifeboat.service): systemd's own parser
// accepts every line of it without a warning, and its ExecStart runs `lifeboat
// serve` with flags `serve` has. No root, no systemd running (systemd-analyze
// verify reads unit files offline).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serve } from '../src/cli/commands/serve.js';
import { BIN, tempDir } from './helpers.js';

const UNIT = fileURLToPath(new URL('../../contrib/lifeboat.service', import.meta.url));
const INSTALLED_BIN = '/usr/local/bin/lifeboat';
const DROP_IN = fileURLToPath(new URL('../../contrib/lifeboat.service.d/virtual-lab.conf', import.meta.url));

function execStart(unit: string): string[] {
  const lines = unit.split('\n').filter((l) => l.startsWith('ExecStart='));
  assert.equal(lines.length, 1, 'one ExecStart line');
  return lines[0]!.slice('ExecStart='.length).trim().split(/\s+/);
}

test('systemd-analyze verify accepts contrib/lifeboat.service without a warning', async () => {
  const unit = await readFile(UNIT, 'utf8');
  assert.equal(execStart(unit)[0], INSTALLED_BIN, 'the unit runs the binary `npm link` installs');
  const { dir, cleanup } = await tempDir('lifeboat-unit-');
  try {
    // The same unit, with the checkout's binary where `npm link` would put it (verify checks that ExecStart can run).
    const copy = join(dir, 'lifeboat.service');
    await writeFile(copy, unit.replace(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${BIN} `));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.status, 0, r.stderr);
    // systemd ignores a setting it cannot parse with a warning and exit 0: any output is a broken line.
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '');

    // The check can fail: a misspelt setting is reported.
    await writeFile(copy, unit.replace(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${BIN} `).replace('KillMode=process', 'KillMode=proces'));
    const broken = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 60_000 });
    assert.match(`${broken.stdout}${broken.stderr}`, /kill mode/i);
  } finally {
    await cleanup();
  }
});

test('the virtual-lab drop-in parses, and with it the unit may make network and mount namespaces and hold CAP_NET_ADMIN and CAP_SYS_ADMIN', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-unit-');
  try {
    const unit = (await readFile(UNIT, 'utf8')).replace(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${BIN} `);
    await writeFile(join(dir, 'lifeboat.service'), unit);
    // Where systemd finds the unit, it finds its drop-ins (<unit>.d/*.conf).
    const env = { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` };
    const analyze = (...args: string[]) => spawnSync('systemd-analyze', args, { encoding: 'utf8', timeout: 60_000, cwd: dir, env });
    const security = () => {
      const r = analyze('security', '--offline=yes', 'lifeboat.service');
      assert.equal(r.error, undefined, String(r.error));
      return r.stdout;
    };
    const allows = (report: string, what: string) => new RegExp(`✗ ${what.replace(/[~=]/g, '\\$&')}\\s`).test(report);
    const before = security();
    assert.ok(!allows(before, 'RestrictNamespaces=~net') && !allows(before, 'CapabilityBoundingSet=~CAP_SYS_ADMIN'), before);

    await mkdir(join(dir, 'lifeboat.service.d'));
    await writeFile(join(dir, 'lifeboat.service.d', 'virtual-lab.conf'), await readFile(DROP_IN, 'utf8'));
    const r = analyze('verify', 'lifeboat.service');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '');
    const after = security();
    for (const what of ['RestrictNamespaces=~net', 'RestrictNamespaces=~mnt', 'CapabilityBoundingSet=~CAP_NET_ADMIN', 'CapabilityBoundingSet=~CAP_SYS_ADMIN'])
      assert.ok(allows(after, what), `${what} with the drop-in:\n${after}`);
    // Only what a lab needs: user and pid namespaces stay refused.
    assert.ok(!allows(after, 'RestrictNamespaces=~user') && !allows(after, 'RestrictNamespaces=~pid'), after);
  } finally {
    await cleanup();
  }
});

test("the unit's ExecStart is `lifeboat serve` with flags serve knows, each with its value", async () => {
  const [, command, ...args] = execStart(await readFile(UNIT, 'utf8'));
  assert.equal(command, 'serve');
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    assert.match(flag, /^--[a-z-]+$/, `a flag, not ${flag}`);
    const option = serve.options[flag.slice(2)];
    assert.ok(option !== undefined, `serve has no ${flag}`);
    if (option.type === 'string') assert.ok(args[i + 1] !== undefined && !args[i + 1]!.startsWith('--'), `${flag} needs a value`);
    if (option.type === 'string') i++;
  }
});
