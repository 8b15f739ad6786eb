import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QmpClient } from '../src/qemu/qmp.js';
import { MiB, backupJson, cli, rng, tempDir, writeRawDisk } from './helpers.js';

test(
  'running VM: backups through QMP fleecing while the guest writes; each point consistent and exact; CBT from QEMU bitmaps; no temporary node left',
  { timeout: 5 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const rand = rng(81);
    const raw = join(dir, 'disk.raw');
    const content = await writeRawDisk(raw, rand, 32, [0, 7, 13, 26], 2 * MiB + 777);
    const img = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, img]);
    const ours = join(dir, 'lifeboat.qmp');
    const theirs = join(dir, 'test.qmp');
    // No OS: the firmware looks for one forever, the VM runs, and its disk takes writes through the monitor.
    const vm = spawn(
      'qemu-system-x86_64',
      [
        '-accel',
        'tcg',
        '-display',
        'none',
        '-nodefaults',
        '-m',
        '128',
        '-smp',
        '2',
        '-qmp',
        `unix:${ours},server=on,wait=off`,
        '-qmp',
        `unix:${theirs},server=on,wait=off`,
        '-drive',
        `if=none,id=hd0,node-name=drive0,file=${img},format=qcow2`,
        '-device',
        'virtio-blk-pci,drive=hd0',
      ],
      { stdio: 'ignore' },
    );
    let qmp: QmpClient | undefined;
    try {
      for (let i = 0; i < 100 && !qmp; i++) {
        qmp = await QmpClient.connect(theirs, 200).catch(() => undefined);
        if (!qmp) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(qmp, "the VM's monitor answers");
      const guestWrite = async (byte: number, offset: number, length: number): Promise<void> => {
        const out = await qmp!.execute<string>('human-monitor-command', {
          'command-line': `qemu-io hd0 "write -P 0x${byte.toString(16)} ${offset} ${length}"`,
        });
        assert.doesNotMatch(out, /error/i, 'qemu-io write');
        content.fill(byte, offset, offset + length);
      };
      const leftovers = async (): Promise<void> => {
        const nodes = await qmp!.execute<{ 'node-name': string; 'dirty-bitmaps'?: { name: string }[] }[]>('query-named-block-nodes');
        assert.deepEqual(
          nodes.filter((n) => n['node-name'].startsWith('lifeboat')).map((n) => n['node-name']),
          [],
          'no temporary node',
        );
        assert.deepEqual(await qmp!.execute('query-jobs'), [], 'no block job');
        const bitmaps = nodes.find((n) => n['node-name'] === 'drive0')!['dirty-bitmaps'] ?? [];
        assert.equal(bitmaps.length, 2, `one bitmap and its twin: ${bitmaps.map((b) => b.name).join(', ')}`);
      };
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      const c = await cli(['job', 'create', 'vm', '--repo', repo, '--qmp', ours, '--drive', 'drive0', '--cbt']);
      assert.equal(c.code, 0, c.stderr);
      const backup = (): ReturnType<typeof backupJson> => backupJson(repo, 'vm');
      const restored = async (point: string): Promise<Buffer> => {
        const out = join(dir, `${point}.raw`);
        const r = await cli(['restore', 'vm', '--repo', repo, '--point', point, '--to', out, '--format', 'raw']);
        assert.equal(r.code, 0, r.stderr);
        return readFile(out);
      };

      const full = await backup();
      assert.equal(full.kind, 'full');
      assert.ok((await restored(full.pointId)).equals(content), 'the full is the disk');
      await leftovers();

      await guestWrite(0x41, 3 * MiB + 4096, 8192);
      await guestWrite(0x42, 20 * MiB, 2 * MiB);
      const inc = await backup();
      assert.equal(inc.kind, 'increment');
      assert.equal(inc.bytesRead, 3 * MiB, 'CBT: only the three dirty blocks are read');
      assert.equal(inc.blocksStored, 3);
      assert.ok((await restored(inc.pointId)).equals(content));
      await leftovers();
      const pts = JSON.parse((await cli(['points', 'vm', '--repo', repo, '--json'])).stdout) as {
        vm: { vcpus: number; memoryMiB: number; disks: { format: string }[] };
      }[];
      assert.deepEqual([pts[1]!.vm.vcpus, pts[1]!.vm.memoryMiB, pts[1]!.vm.disks[0]!.format], [2, 128, 'qcow2'], 'VM facts from QMP');

      // The guest keeps writing while a backup runs: the point is the disk at one instant, before or after each write.
      await guestWrite(0x43, 9 * MiB, 64 * 1024);
      const before = Buffer.from(content);
      const running = backup();
      await new Promise((r) => setTimeout(r, 150));
      await guestWrite(0x44, 9 * MiB + 32 * 1024, 64 * 1024);
      await guestWrite(0x45, 30 * MiB, 1 * MiB);
      const during = await running;
      const got = await restored(during.pointId);
      assert.ok(
        got.equals(before) || got.equals(content) || got.equals(Buffer.concat([content.subarray(0, 30 * MiB), before.subarray(30 * MiB)])),
        'the point is consistent',
      );
      await leftovers();
      const after = await backup();
      assert.ok((await restored(after.pointId)).equals(content), 'the next point has every write');
      await leftovers();

      // A run killed with -9 while it reads leaves its nodes in the VM; the next run removes them and succeeds.
      await guestWrite(0x46, 5 * MiB, 4096);
      const killed = await cli(['backup', 'vm', '--repo', repo], { LIFEBOAT_CRASH_AT: '2' });
      assert.equal(killed.signal, 'SIGKILL');
      const stale = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes');
      assert.ok(
        stale.some((n) => n['node-name'] === 'lifeboat-fleece'),
        'the killed run left its overlay',
      );
      const recovered = await backup();
      assert.ok((await restored(recovered.pointId)).equals(content));
      await leftovers();
    } finally {
      qmp?.close();
      vm.kill('SIGKILL');
      await cleanup();
    }
  },
);
