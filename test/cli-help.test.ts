// The CLI explains itself: every flag described in --help with its default, typos of commands answered with the
// closest one, usage mistakes answered briefly, and exit codes as docs/errors.md says. No root, QEMU or ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { COMMAND_NAMES, loadCommands, main } from '../src/cli/main.js';
import { EXIT, exitCodeFor } from '../src/cli/exit-codes.js';
import { ERROR_CATEGORIES, ERROR_CODES, LifeboatError, type ErrorCode } from '../src/core/errors.js';
import { cli, tempDir } from './helpers.js';

const docText = (): Promise<string> => readFile(fileURLToPath(new URL('../../docs/errors.md', import.meta.url)), 'utf8');

/** code → exit code, from the table of codes in docs/errors.md. */
async function documentedExits(): Promise<Map<string, number>> {
  return new Map([...(await docText()).matchAll(/^\| `(LFB_ERR_[A-Z_]+)` \| \w+ \| (\d+) \|/gm)].map((m) => [m[1]!, Number(m[2])]));
}

/** The code at the end of a CLI error message: `lifeboat: … [LFB_ERR_X]`. */
function codeOf(stderr: string): string | undefined {
  return /\[(LFB_ERR_[A-Z_]+)\]\s*$/.exec(stderr)?.[1];
}

/**
 * `lifeboat <command> --help` run by main() in this process, its standard output kept: the same path as the
 * command line (find the command, parse, print), without a Node start-up per command (60 of them took 28 s).
 */
async function helpInProcess(name: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  }) as typeof process.stdout.write;
  // main() sets up a process for itself (crash handlers, EPIPE on stdout): those it adds here are taken away again.
  const before = {
    rejection: process.listeners('unhandledRejection'),
    exception: process.listeners('uncaughtException'),
    out: process.stdout.listeners('error'),
  };
  try {
    const code = await main([...name.split(' '), '--help']);
    return { code, stdout: chunks.join(''), stderr: '' };
  } finally {
    process.stdout.write = write;
    for (const l of process.listeners('unhandledRejection')) if (!before.rejection.includes(l)) process.off('unhandledRejection', l);
    for (const l of process.listeners('uncaughtException')) if (!before.exception.includes(l)) process.off('uncaughtException', l);
    for (const l of process.stdout.listeners('error')) if (!before.out.includes(l)) process.stdout.off('error', l as (err: Error) => void);
  }
}

test('every command --help lists each flag of its option table with its description and default', { timeout: 120_000 }, async () => {
  // The real command line once: its output is what main() prints in this process for every command below.
  const spawned = await cli(['backup', '--help']);
  assert.equal(spawned.code, 0, spawned.stderr);
  assert.equal(spawned.stdout, (await helpInProcess('backup')).stdout);
  for (const cmd of await loadCommands()) {
    const r = await helpInProcess(cmd.name);
    assert.equal(r.code, 0, `${cmd.name} --help: ${r.stderr}`);
    assert.ok(r.stdout.startsWith(`usage: lifeboat ${cmd.usage}\n`), `${cmd.name} --help starts with its usage`);
    assert.ok(r.stdout.includes(cmd.summary), `${cmd.name} --help has its summary`);
    const lines = r.stdout.split('\n');
    for (const [name, option] of Object.entries(cmd.options)) {
      assert.ok(option.description.trim().length > 0, `${cmd.name} --${name} has a description`);
      const line = lines.find((l) => new RegExp(`^  --${name}( |$)`).test(l));
      assert.ok(line !== undefined, `${cmd.name} --help lists --${name}:\n${r.stdout}`);
      assert.ok(line.includes(option.description), `${cmd.name} --${name} line has its description: ${line}`);
      if (option.defaultText !== undefined) assert.ok(line.includes(`(default: ${option.defaultText})`), `${cmd.name} --${name} line has its default: ${line}`);
    }
    // Nothing listed that the command does not accept.
    const listed = lines.flatMap((l) => /^ {2}--([a-z-]+)/.exec(l)?.[1] ?? []).filter((n) => n !== 'help');
    assert.deepEqual(listed.sort(), Object.keys(cmd.options).sort(), `${cmd.name} lists exactly its options`);
  }
});

test('the command table names every command of src/cli/commands, each in the module it loads', async () => {
  const folder = fileURLToPath(new URL('../src/cli/commands/', import.meta.url));
  const exported: string[] = [];
  for (const file of (await readdir(folder)).filter((f) => f.endsWith('.js'))) {
    const m = (await import(pathToFileURL(join(folder, file)).href)) as Record<string, unknown>;
    for (const v of Object.values(m)) if (typeof v === 'object' && v !== null && 'run' in v && 'usage' in v && 'name' in v) exported.push(String(v.name));
  }
  assert.deepEqual([...COMMAND_NAMES].sort(), exported.sort());
  assert.deepEqual(
    (await loadCommands()).map((c) => c.name),
    COMMAND_NAMES,
  );
});

test('an unknown command suggests the closest one, briefly, with exit 2', async () => {
  const cases: [string[], string | undefined][] = [
    [['bakup', 'vm'], 'backup'],
    [['job', 'lst'], 'job list'],
    [['instant', 'strat', 'vm'], 'instant start'],
    [['retention', 'plna'], 'retention plan'],
    [['frobnicate'], undefined],
  ];
  for (const [argv, suggestion] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, EXIT.usage, r.stderr);
    assert.equal(codeOf(r.stderr), 'LFB_ERR_USAGE');
    if (suggestion === undefined) assert.ok(!r.stderr.includes('did you mean'), r.stderr);
    else assert.ok(r.stderr.includes(`did you mean "lifeboat ${suggestion}"?`), r.stderr);
    // Not the whole command list.
    assert.ok(r.stderr.split('\n').length <= 3, r.stderr);
    assert.ok(r.stderr.includes('lifeboat --help'), r.stderr);
  }
});

test('usage errors print the short usage line and where the help is, not the whole help', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const cases: { argv: string[]; env?: Record<string, string>; problem: RegExp; command: string }[] = [
      { argv: ['backup', 'vm', '--repo', dir, '--frob'], problem: /Unknown option '--frob'/, command: 'backup' },
      { argv: ['points', '--repo', dir], problem: /takes <job>/, command: 'points' },
      { argv: ['points', 'vm'], env: { LIFEBOAT_REPO: '' }, problem: /--repo <dir> is required/, command: 'points' },
      { argv: ['restore', 'vm', '--repo', dir, '--to', join(dir, 'x.raw')], problem: /--point is required/, command: 'restore' },
    ];
    for (const c of cases) {
      const r = await cli(c.argv, c.env);
      assert.equal(r.code, EXIT.usage, `${c.argv.join(' ')}: ${r.stderr}`);
      assert.equal(codeOf(r.stderr), 'LFB_ERR_USAGE', r.stderr);
      assert.match(r.stderr, c.problem);
      assert.ok(r.stderr.includes(`see lifeboat ${c.command} --help`), r.stderr);
      assert.ok(!r.stderr.includes('options:'), `no full help: ${r.stderr}`);
      assert.ok(r.stderr.trim().split('\n').length <= 3, `short: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
  } finally {
    await cleanup();
  }
});

test('the exit-code table of docs/errors.md names every exit code a category maps to', async () => {
  const doc = await docText();
  const table = new Set([...doc.matchAll(/^\| (\d+) \| /gm)].map((m) => Number(m[1])));
  for (const category of ERROR_CATEGORIES) {
    const code = (Object.keys(ERROR_CODES) as ErrorCode[]).find((c) => ERROR_CODES[c] === category);
    if (code === undefined) continue;
    assert.ok(table.has(exitCodeFor(new LifeboatError(code, 'x'))), `exit code of ${category} is documented`);
  }
  // "conflict (already exists)": every code for something that already exists is a Conflict, exit 5.
  for (const code of ['LFB_ERR_REPO_EXISTS', 'LFB_ERR_JOB_EXISTS', 'LFB_ERR_SESSION_EXISTS'] as const)
    assert.equal(exitCodeFor(new LifeboatError(code, 'x')), EXIT.conflict, code);
});

test('coded errors through the CLI exit as docs/errors.md says', { timeout: 60_000 }, async () => {
  const exits = await documentedExits();
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'disk.raw');
    await writeFile(disk, Buffer.alloc(1024 * 1024, 7));
    await mkdir(join(dir, 'full'));
    await writeFile(join(dir, 'full', 'x'), 'x');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk])).code, 0);
    const cases: [string[], ErrorCode][] = [
      [['points', 'vm', '--repo', join(dir, 'nowhere')], 'LFB_ERR_REPO_NOT_FOUND'],
      [['points', 'nojob', '--repo', repo], 'LFB_ERR_JOB_NOT_FOUND'],
      [['repo', 'init', join(dir, 'full')], 'LFB_ERR_REPO_EXISTS'],
      [['repo', 'init', join(dir, 'r2'), '--block-size', '3K'], 'LFB_ERR_INVALID_ARGUMENT'],
      [['job', 'create', 'vm', '--repo', repo, '--disk', disk], 'LFB_ERR_JOB_EXISTS'],
      [['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', join(dir, 'out.raw')], 'LFB_ERR_NO_POINTS'],
    ];
    for (const [argv, code] of cases) {
      const r = await cli(argv);
      assert.equal(codeOf(r.stderr), code, `${argv.join(' ')}: ${r.stderr}`);
      assert.equal(r.code, exits.get(code), `${argv.join(' ')}: exit ${r.code}, docs/errors.md says ${exits.get(code)} for ${code}`);
    }
  } finally {
    await cleanup();
  }
});
