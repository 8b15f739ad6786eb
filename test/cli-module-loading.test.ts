// What a CLI process loads: a command on a repository in a folder loads no S3 client. The AWS SDK is about 60 ms of
// module loading, and the memory it takes made every child process the run starts (qemu-storage-daemon, qemu-nbd)
// slower to fork: a 1 GiB full backup by `lifeboat backup` took 2.0–2.3 s with it loaded, 1.6–1.8 s without.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';
import { cli, tempDir } from './helpers.js';

/** Runs the CLI with a preload that writes, at exit, the CommonJS modules the process loaded (the SDK is CommonJS). */
async function loadedBy(dir: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const preload = join(dir, 'loaded.mjs');
  const list = join(dir, 'loaded.txt');
  await writeFile(
    preload,
    [
      "import { createRequire } from 'node:module';",
      "import { writeFileSync } from 'node:fs';",
      'const require = createRequire(import.meta.url);',
      `process.on('exit', () => writeFileSync(${JSON.stringify(list)}, Object.keys(require.cache).join('\\n')));`,
    ].join('\n'),
  );
  await writeFile(list, '');
  const r = await cli(args, { NODE_OPTIONS: `--import ${pathToFileURL(preload).href}`, ...env });
  return { code: r.code, stderr: r.stderr, modules: (await readFile(list, 'utf8')).split('\n').filter((m) => m !== '') };
}

const sdk = (modules: string[]): string[] => modules.filter((m) => m.includes('/node_modules/@aws-sdk/'));

test('commands on a repository in a folder load no S3 client; one on s3:// does', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const repo = join(dir, 'repo');
    const disk = join(dir, 'disk.raw');
    await writeFile(disk, Buffer.alloc(4 << 20, 7));
    await truncate(disk, 8 << 20);
    for (const args of [
      ['repo', 'init', repo],
      ['job', 'create', 'j', '--repo', repo, '--disk', disk],
      ['backup', 'j', '--repo', repo],
      ['points', 'j', '--repo', repo],
    ]) {
      const r = await loadedBy(dir, args);
      assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.modules.length > 0, 'the preload saw the modules the process loaded');
      assert.deepEqual(sdk(r.modules), [], `lifeboat ${args.join(' ')} loaded the AWS SDK`);
    }
    // The probe can see the SDK: a repository on S3 (an endpoint nobody listens on) loads it, and fails with a code.
    const s3 = await loadedBy(dir, ['repo', 'info', '--repo', 's3://no-bucket/repo'], {
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
      AWS_REGION: 'us-east-1',
    });
    assert.notEqual(s3.code, 0);
    assert.match(s3.stderr, /\[LFB_ERR_[A-Z_]+\]/);
    assert.ok(sdk(s3.modules).length > 0, 'repo info s3://… loaded the AWS SDK');
  } finally {
    await cleanup();
  }
});

/** The ES modules importing `module` (a path under dist/) loads, recorded by a resolve hook (hooks run off the main thread: a file). */
async function esmGraphOf(dir: string, module: string): Promise<string[]> {
  const list = join(dir, `graph-${module.replace(/\W/g, '_')}.txt`);
  await writeFile(list, '');
  const hook = [
    "import { appendFileSync } from 'node:fs';",
    'export async function resolve(specifier, context, next) {',
    '  const r = await next(specifier, context);',
    `  appendFileSync(${JSON.stringify(list)}, r.url + '\\n');`,
    '  return r;',
    '}',
  ].join('\n');
  const main = [
    "import { register } from 'node:module';",
    `register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`,
    `await import(${JSON.stringify(pathToFileURL(join(process.cwd(), 'dist', module)).href)});`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', main], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (await readFile(list, 'utf8')).split('\n').filter((u) => u !== '');
}

// A `files ls|get|find` that a running server answers loads the hand-off alone: the appliance's code (browse,
// guestfish, the point's export) and the repository's load only when the CLI reads the point itself. They were
// 0.07 s of every handed-off command's start.
test("files ls|get|find load neither the appliance's code nor the repository's until they read a point themselves", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const heavy = (urls: string[]): string[] => urls.filter((u) => /\/src\/(files\/(index|browse|guestfish|point-export)|repository\/index)\.js$/.test(u));
    const files = await esmGraphOf(dir, 'src/cli/commands/files.js');
    assert.ok(
      files.some((u) => u.endsWith('/src/cli/files-hand-off.js')),
      'the hook saw the command module load the hand-off',
    );
    assert.deepEqual(heavy(files), []);
    // The probe can see them: files mount, which always boots its own appliance, loads them.
    assert.ok(heavy(await esmGraphOf(dir, 'src/cli/commands/files-mount.js')).length > 0, 'files mount loads the appliance code');
  } finally {
    await cleanup();
  }
});
