// The shipped systemd unit (contrib/lifeboat.service): systemd's own parser
// accepts every line of it without a warning, and its ExecStart runs `lifeboat
// serve` with flags `serve` has. No root, no systemd running (systemd-analyze
// verify reads unit files offline).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serve } from '../src/cli/commands/serve.js';
import { BIN, tempDir } from './helpers.js';

const UNIT = fileURLToPath(new URL('../../contrib/lifeboat.service', import.meta.url));
const INSTALLED_BIN = '/usr/local/bin/lifeboat';

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
