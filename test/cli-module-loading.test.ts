// What a CLI process loads: a command on a repository in a folder loads no S3 client. The AWS SDK is about 60 ms of
// module loading, and the memory it takes made every child process the run starts (qemu-storage-daemon, qemu-nbd)
// slower to fork: a 1 GiB full backup by `lifeboat backup` took 2.0–2.3 s with it loaded, 1.6–1.8 s without.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
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
