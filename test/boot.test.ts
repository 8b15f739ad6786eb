import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cli, tempDir, withPort111 } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MAKE_IMAGE = fileURLToPath(new URL('../../test/fixtures/make-boot-image.sh', import.meta.url));

/**
 * The headline: a VM boots from its backup over the NFS datastore, without a
 * restore. A 16 MiB disk (SYSLINUX, Debian's kernel, a busybox initramfs) is
 * backed up and published; QEMU (TCG) boots it from nfs://; the guest kernel
 * checks a payload partition's SHA-256 through virtio-blk and says so on the
 * serial console.
 */
test('boot: a VM boots from a restore point over nfs:// and reads its disk bit-exact', { timeout: 10 * 60_000 }, () =>
  withPort111(async () => {
    const { dir, cleanup } = await tempDir();
    let server: Server | undefined;
    try {
      const image = join(dir, 'boot.img');
      const sum = (await run('bash', [MAKE_IMAGE, image, join(dir, 'build')], { maxBuffer: 1 << 24 })).stdout.trim().split('\n').pop()!;
      assert.match(sum, /^[0-9a-f]{64}$/);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
      assert.equal((await cli(['job', 'create', 'tiny', '--repo', repo, '--disk', image])).code, 0);
      assert.equal((await cli(['backup', 'tiny', '--repo', repo])).code, 0);
      server = await startServer(repo);
      const s = await cli(['instant', 'start', 'tiny', '--repo', repo, '--point', 'latest', '--name', 'boot']);
      assert.equal(s.code, 0, s.stderr);
      const qemu = spawn(
        'qemu-system-x86_64',
        [
          '-accel',
          'tcg',
          '-m',
          '256',
          '-smp',
          '1',
          '-nic',
          'none',
          '-nographic',
          '-serial',
          'stdio',
          '-monitor',
          'none',
          '-no-reboot',
          '-drive',
          'file=nfs://127.0.0.1/lifeboat/boot/disk0-flat.vmdk,format=raw,if=virtio',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let serial = '';
      qemu.stdout.on('data', (d: Buffer) => (serial += d.toString()));
      qemu.stderr.on('data', (d: Buffer) => (serial += d.toString()));
      const exited = new Promise<void>((r) => qemu.on('close', () => r()));
      const deadline = Date.now() + 180_000;
      while (!/DISK-(OK|BAD|NONE)/.test(serial) && Date.now() < deadline && qemu.exitCode === null) await new Promise((r) => setTimeout(r, 200));
      qemu.kill('SIGKILL');
      await exited;
      assert.match(serial, /BOOT-OK kernel=/, `no boot marker on the serial console:\n${serial}`);
      assert.match(serial, new RegExp(`DISK-OK ${sum}`), `the guest did not read its payload bit-exact:\n${serial}`);
    } finally {
      if (server) await kill9(server);
      await cleanup();
    }
  }),
);
