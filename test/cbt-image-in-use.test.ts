/**
 * A CBT job's qcow2 image held by another QEMU process (a VM running from
 * it, without --qmp): the run's own storage daemon, started while the run
 * scans its files, cannot lock the image. The run fails with a clear error,
 * leaves no point and no helper process behind, and the next run, once the
 * image is free, takes its changes from the bitmaps as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { availablePoints, backupJson, cli, tempDir, until } from './helpers.js';
import { QmpClient } from '../src/qemu/qmp.js';
import { startStorageDaemon } from '../src/source/image-source.js';

const qemuIo = (img: string, ...cmds: string[]): void => {
  execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), img], { stdio: 'ignore' });
};

/** Processes other than `except` whose command line names `path` (QEMU helpers a run may have left). */
function processesOf(path: string, except: number[]): string[] {
  let out: string;
  try {
    out = execFileSync('pgrep', ['-af', path]).toString();
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return out
    .trim()
    .split('\n')
    .filter((l) => l !== '' && !except.includes(Number(l.split(' ')[0])) && !l.includes('pgrep'));
}

test('a CBT run of a qcow2 image another QEMU holds fails clearly, leaves nothing, and the next run uses the bitmaps', { timeout: 3 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const img = join(dir, 'in-use.qcow2');
  let holder: ReturnType<typeof spawn> | undefined;
  try {
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
    qemuIo(img, 'write -P 0x11 0 4M', 'write -P 0x22 20M 2M');
    const repo = join(dir, 'repo');
    assert.equal((await cli(['repo', 'init', repo])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', img, '--cbt'])).code, 0);
    const full = await backupJson(repo, 'vm');
    assert.equal(full.kind, 'full');

    qemuIo(img, 'write -P 0x33 8M 64k');
    // A VM's QEMU: the image open for writing, with its lock. Its monitor comes after the image in its options, so
    // the monitor's socket listens once the image is locked (a poll with qemu-img would take the locks itself).
    const monitor = join(dir, 'holder.sock');
    holder = spawn(
      'qemu-storage-daemon',
      [
        '--blockdev',
        `driver=file,node-name=f,filename=${img}`,
        '--blockdev',
        'driver=qcow2,node-name=d,file=f',
        '--chardev',
        `socket,id=m,path=${monitor},server=on,wait=off`,
        '--monitor',
        'chardev=m',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let holderErr = '';
    holder.stderr!.on('data', (d: Buffer) => (holderErr += d.toString()));
    const holderPid = holder.pid!;
    const qmp = await until('the other process holding the image', async () => {
      assert.equal(holder!.exitCode, null, `the holder exited: ${holderErr}`);
      return QmpClient.connect(monitor).catch(() => undefined);
    });
    qmp.close();
    const refused = await cli(['backup', 'vm', '--repo', repo]);
    assert.notEqual(refused.code, 0, 'the run cannot read an image another process writes');
    assert.match(refused.stderr, /LFB_ERR_DISK_READ/, refused.stderr);
    assert.match(refused.stderr, /running VM/, 'says what to do instead');
    assert.equal((await availablePoints(repo)).length, 1, 'no point from the refused run');
    assert.deepEqual(processesOf(img, [holderPid]), [], 'no storage daemon or qemu-nbd of the run is left');

    const gone = new Promise((resolve) => holder!.once('exit', resolve));
    holder.kill('SIGTERM');
    await gone;
    holder = undefined;
    const inc = await backupJson(repo, 'vm');
    assert.equal(inc.kind, 'increment');
    assert.equal(inc.bytesRead, 1024 * 1024, 'only the dirty block is read: the bitmaps survived the other process');
    const out = join(dir, 'restored.qcow2');
    assert.equal((await cli(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', out])).code, 0);
    execFileSync('qemu-img', ['compare', '-q', img, out]);
  } finally {
    holder?.kill('SIGKILL');
    await cleanup();
  }
});

test("a storage daemon's start resolves only once its monitor takes connections (100 starts, each connected to at once)", { timeout: 2 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const img = join(dir, 'ready.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
    for (let i = 0; i < 100; i++) {
      const daemon = await startStorageDaemon(img);
      try {
        // The socket file exists from the daemon's bind(), before its listen(): a start that went by the file alone
        // let this connection be refused now and then.
        const qmp = await QmpClient.connect(daemon.qmpSocket);
        qmp.close();
      } finally {
        await daemon.stop();
      }
    }
  } finally {
    await cleanup();
  }
});
