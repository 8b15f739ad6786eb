import { watch } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { spawnHelper } from '../core/spawner.js';
import type { NbdAddress } from '../nbd/nbd-client.js';

/**
 * The format an image file starts with, from its magic, without running
 * anything: 'raw' when none matches (qemu's own probe treats it so too).
 */
export async function sniffFormat(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(72);
    await fh.read(b, 0, 72, 0);
    if (b.subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]))) return 'qcow2';
    if (b.subarray(0, 4).toString('latin1') === 'KDMV' || b.subarray(0, 21).toString('latin1') === '# Disk DescriptorFile') return 'vmdk';
    if (b.subarray(0, 8).toString('latin1') === 'vhdxfile') return 'vhdx';
    if (b.readUInt32LE(64) === 0xbeda107f) return 'vdi';
    if (b.subarray(0, 8).toString('latin1') === 'conectix') return 'vpc';
    if (b.subarray(0, 4).toString('latin1') === 'QED\0') return 'qed';
    return 'raw';
  } finally {
    await fh.close();
  }
}

/** How a helper says it serves: a check polled every millisecond at first, or a pid file it writes once it does. */
type Readiness = { readonly poll: (dir: string) => Promise<boolean> } | { readonly pidFile: (dir: string) => string };

/**
 * Runs a QEMU helper (qemu-nbd, qemu-storage-daemon) in a private temporary
 * folder for one run: resolves once it is ready, fails with its own words if
 * it exits first (`lockedCode` when it could not lock the image), and `stop`
 * ends it and removes the folder.
 */
async function runHelper(
  tool: string,
  pkg: string,
  path: string,
  args: (dir: string) => string[],
  readiness: Readiness,
  lockedCode: 'LFB_ERR_DISK_READ' | 'LFB_ERR_CBT',
): Promise<{ dir: string; stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `lifeboat-${tool}-`));
  // A file the helper creates wakes the wait at once (a watch of its private folder), with no polling in the way of
  // the helper's start on a busy machine; a slow timer stays as a safety net. Its exit wakes the wait too.
  let wake: () => void = () => undefined;
  /** Events seen in the folder (or the exit): one that comes while a check runs is not waited for again. */
  let events = 0;
  const watcher =
    'pidFile' in readiness
      ? watchFolder(dir, () => {
          events += 1;
          wake();
        })
      : undefined;
  // Through the server's spawner when there is one: a fork of the whole server would block this thread for 10 ms.
  const child = spawnHelper(tool, args(dir));
  let stderr = '';
  let exited: string | undefined;
  let missing = false;
  /** Ended, with or without having started: one of the two events comes, once. */
  const ended = new Promise<void>((resolve) => {
    child.on('error', (err: NodeJS.ErrnoException) => {
      missing = err.code === 'ENOENT';
      exited = missing ? `cannot start ${tool}: ${err.message} (install ${pkg})` : `${tool} was not started: ${err.message}`;
      resolve();
      events += 1;
      wake();
    });
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      exited = `${tool} exited (${signal ?? code ?? 'ended'})`;
      resolve();
      events += 1;
      wake();
    });
  });
  child.on('stderr', (text: string) => (stderr += text));
  // SIGTERM lets the helper close the image cleanly (qemu-storage-daemon stores its bitmaps then);
  // one still running 20 s later is killed, so a stuck helper cannot hold the run forever.
  const stop = async (): Promise<void> => {
    watcher?.close();
    if (exited === undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await ended;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  // A pid file counts once its pid is in it (the daemon creates it, then writes it, and removes it if that fails).
  const ready = 'pidFile' in readiness ? (d: string) => holdsPid(readiness.pidFile(d)) : readiness.poll;
  // Polled every millisecond at first (a helper is usually up in 10–40 ms, and a run waits for it), then every
  // 20 ms, for up to 15 s; a ready file is looked for at each event in the folder and every 20 ms.
  const started = performance.now();
  for (let attempt = 0; ; attempt++) {
    const seen = events;
    if (exited !== undefined) {
      watcher?.close();
      await rm(dir, { recursive: true, force: true });
      const locked = /lock/i.test(stderr);
      throw new LifeboatError(
        missing ? 'LFB_ERR_TOOL_MISSING' : locked ? lockedCode : 'LFB_ERR_TOOL_FAILED',
        `${path}: ${exited}: ${stderr.trim() || 'no message'}${locked ? ' (is a running VM using it? back it up through --qmp)' : ''}`,
        { details: { disk: path } },
      );
    }
    if ((await ready(dir)) && exited === undefined) {
      watcher?.close();
      return { dir, stop };
    }
    if (performance.now() - started > 15_000) {
      await stop();
      throw new LifeboatError('LFB_ERR_TOOL_FAILED', `${tool} did not start for ${path} within 15 s: ${stderr.trim()}`);
    }
    if (events !== seen) continue;
    await new Promise<void>((r) => {
      const timer = setTimeout(r, watcher === undefined && attempt < 200 ? 1 : 20);
      wake = () => {
        clearTimeout(timer);
        r();
      };
    });
  }
}

/** A watch of a folder calling `onEvent` at each change in it; a watch that cannot be set up leaves the timer alone. */
function watchFolder(dir: string, onEvent: () => void): { close(): void } | undefined {
  try {
    const w = watch(dir, onEvent);
    w.on('error', () => w.close());
    return w;
  } catch {
    return undefined;
  }
}

const holdsPid = (file: string): Promise<boolean> =>
  readFile(file, 'latin1').then(
    (text) => /^\d+\n$/.test(text),
    () => false,
  );

/** A path as one value of a QEMU option list (a comma is written twice). */
const optionValue = (path: string): string => path.replace(/,/g, ',,');

/**
 * Serves an image read-only over a private unix socket with qemu-nbd, for one
 * run: reads see the disk as the guest does (a qcow2 backing chain included).
 * (Images with changed-block tracking go through startStorageDaemon instead.)
 */
export async function serveImage(path: string, format: string): Promise<{ address: NbdAddress; stop: () => Promise<void> }> {
  await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `disk ${path} cannot be opened: ${err.code ?? String(err)}`, { details: { disk: path } });
  });
  const socketIn = (dir: string): string => join(dir, 'nbd.sock');
  // qemu-nbd listens before it opens the image: a connection can be taken while it is about to exit (an image
  // another QEMU holds), and its socket file stays after. Only its NBD greeting says the image is open.
  const greets = (dir: string): Promise<boolean> =>
    new Promise<boolean>((r) => {
      const s = connect(socketIn(dir));
      const done = (served: boolean): void => {
        s.destroy();
        r(served);
      };
      s.once('data', () => done(true));
      s.once('error', () => done(false));
      s.once('close', () => done(false));
      s.setTimeout(1000, () => done(false));
    });
  const { dir, stop } = await runHelper(
    'qemu-nbd',
    'qemu-utils',
    path,
    (d) => ['--read-only', `--format=${format}`, `--socket=${socketIn(d)}`, '--shared=4', '--persistent', '--cache=none', path],
    { poll: greets },
    'LFB_ERR_DISK_READ',
  );
  return { address: { socket: socketIn(dir), exportName: '' }, stop };
}

/** A private qemu-storage-daemon with the image open, its QMP monitor and its NBD server (no export yet). */
export interface StorageDaemon {
  readonly qmpSocket: string;
  readonly nbdSocket: string;
  readonly node: string;
  stop(): Promise<void>;
}

/**
 * Opens a qcow2 image in a private qemu-storage-daemon for one run, with a
 * QMP monitor: how changed-block tracking manages an offline image's
 * persistent bitmaps and exports it, in one process (the same QMP steps as
 * for a running VM). Its NBD server is started from the command line (the
 * export needs the run's bitmaps, so it is added over QMP). The image is
 * opened read-write because persistent bitmaps are written into it; no data
 * is ever written. `stop` ends the daemon cleanly, which stores the bitmaps.
 */
export async function startStorageDaemon(path: string): Promise<StorageDaemon> {
  const node = 'lifeboat-disk';
  const qmpIn = (dir: string): string => join(dir, 'qmp.sock');
  const nbdIn = (dir: string): string => join(dir, 'nbd.sock');
  const pidIn = (dir: string): string => join(dir, 'daemon.pid');
  const args = (dir: string): string[] => [
    '--blockdev',
    `driver=file,node-name=lifeboat-file,filename=${optionValue(path)}`,
    '--blockdev',
    `driver=qcow2,node-name=${node},file=lifeboat-file`,
    '--chardev',
    `socket,id=lifeboat-qmp,path=${optionValue(qmpIn(dir))},server=on,wait=off`,
    '--monitor',
    'chardev=lifeboat-qmp',
    '--nbd-server',
    `addr.type=unix,addr.path=${optionValue(nbdIn(dir))}`,
    // Written once the monitor and the NBD server listen, before any connection is taken (qemu-storage-daemon(1)).
    // (The daemon opens its image before its monitor, so a locked image ends it before it is ready.)
    '--pidfile',
    pidIn(dir),
  ];
  const { dir, stop } = await runHelper('qemu-storage-daemon', 'qemu-system-common', path, args, { pidFile: pidIn }, 'LFB_ERR_CBT');
  return { qmpSocket: qmpIn(dir), nbdSocket: nbdIn(dir), node, stop };
}
