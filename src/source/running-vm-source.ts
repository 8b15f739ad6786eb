import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { qemuImg } from '../core/qemu-img.js';
import { QmpClient } from '../qemu/qmp.js';
import { NbdDiskSource } from './nbd-disk-source.js';
import type { ChangeTracking, OpenedSource } from './open-source.js';

/** A drive of a running QEMU VM: `qmp:///path/to/monitor.sock?drive=<node-name>`. */
export interface RunningDrive {
  readonly socket: string;
  readonly node: string;
}

export const isQmpUri = (spec: string): boolean => spec.startsWith('qmp://');

export function qmpUri(socket: string, node: string): string {
  return `qmp://${socket.startsWith('/') ? '' : '/'}${socket}?drive=${encodeURIComponent(node)}`;
}

export function parseQmpUri(spec: string): RunningDrive {
  const u = new URL(spec);
  const node = u.searchParams.get('drive');
  if (u.protocol !== 'qmp:' || !node || u.pathname === '')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `"${spec}" is not qmp:///<monitor socket>?drive=<node-name>`);
  return { socket: decodeURIComponent(u.pathname), node };
}

interface NodeInfo {
  'node-name': string;
  drv: string;
  image: { 'virtual-size': number };
  'dirty-bitmaps'?: { name: string; recording: boolean; inconsistent?: boolean; persistent: boolean }[];
}

/** What QMP can tell of the VM: stored with the point where the user gave nothing else. */
export interface RunningVmFacts {
  readonly vcpus: number;
  readonly memoryMiB: number;
}

const twin = (b: string): string => `${b}-check`;
const FLEECE = 'lifeboat-fleece';
const EXPORT = 'lifeboat-export';
const JOB = 'lifeboat-fleece-job';
/** Frozen copies of the previous point's bitmaps at the instant (QEMU exports only disabled bitmaps). */
const SNAP = 'lifeboat-snapshot';

/**
 * Backs up a drive of a running VM without stopping it, with QEMU's own
 * mechanism (image fleecing, QEMU 7.2): one QMP transaction starts a
 * `blockdev-backup sync=none` from the drive into a temporary overlay that
 * has the drive as backing file (so the overlay reads as the drive at that
 * instant, and the guest's later writes first copy the old data into it), and
 * adds the new point's dirty bitmaps, so no write falls between two points.
 * The overlay is exported over NBD, with frozen copies of the previous
 * point's bitmaps made in the same transaction (exactly the writes between
 * the two instants), and read like any NBD source. Every temporary node, job, export and file is removed when the
 * source closes, also after a failure; the previous point's bitmaps go only
 * once the new point is committed.
 */
export async function openRunningDrive(
  spec: string,
  opts: {
    jobId: string;
    pointId: string;
    previous: ChangeTracking | undefined;
    cbt: boolean;
    /**
     * An image no guest writes to, opened by our own qemu-storage-daemon: no
     * fleecing, the node is exported as it is, on the NBD server the daemon
     * started with (`nbdSocket`). Older bitmaps are retired as the source
     * closes (over this monitor, instead of another process after the
     * commit), and `onClose` stops the daemon, which drops everything else
     * the run added.
     */
    offline?: { readonly onClose: () => Promise<void>; readonly path: string; readonly nbdSocket: string };
  },
): Promise<OpenedSource & { facts?: RunningVmFacts }> {
  const { socket, node } = parseQmpUri(spec);
  let qmp: QmpClient | undefined;
  /** The fleecing overlay's and the NBD server's folder (our own daemon has its own). */
  let dir: string | undefined;
  try {
    qmp = await QmpClient.connect(socket);
    if (!opts.offline) dir = await mkdtemp(join(tmpdir(), 'lifeboat-fleece-'));
  } catch (err) {
    qmp?.close();
    // Our own storage daemon goes too: it holds the image's write lock.
    await opts.offline?.onClose().catch(() => undefined);
    throw err;
  }
  const cleanups: (() => Promise<unknown>)[] = [];
  let cleaned: Promise<void> | undefined;
  /** Runs once: a source that failed to open calls it, and so does this function's own catch. */
  const cleanup = (): Promise<void> =>
    (cleaned ??= (async () => {
      for (const c of [...cleanups].reverse()) await c().catch(() => undefined);
      qmp.close();
      await opts.offline?.onClose();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    })());
  try {
    const nodes = await qmp.execute<NodeInfo[]>('query-named-block-nodes');
    const info = nodes.find((n) => n['node-name'] === node);
    if (!info)
      throw new LifeboatError(
        'LFB_ERR_DISK_NOT_FOUND',
        `the VM behind ${socket} has no block node "${node}" (nodes: ${nodes
          .map((n) => n['node-name'])
          .filter((n) => !n.startsWith('#'))
          .join(', ')})`,
        { details: { disk: spec } },
      );
    // A run killed with -9 cannot clean up: what it left goes now (the job lock says no run of ours is in progress).
    // Our own storage daemon has just started: nothing can be left in it.
    if (!opts.offline) await removeLeftovers(qmp, node, nodes);
    const size = info.image['virtual-size'];
    const prefix = `lifeboat-${opts.jobId.slice(0, 8)}-`;
    const next = `${prefix}${opts.pointId}`;
    const persistent = info.drv === 'qcow2';
    const why = !opts.cbt ? undefined : checkBitmap(info, opts.previous?.bitmap);

    const actions: { type: string; data: Record<string, unknown> }[] = [];
    let exported = node;
    if (opts.offline) {
      // Bitmaps of older points (and of runs that died) go as the source closes, in one transaction, once the blocks
      // are read: removing a stored bitmap rewrites the image's bitmap directory and flushes the image, which has no
      // place before the first read. The previous point's stay until the next run.
      const keep = opts.previous?.bitmap;
      const older = (info['dirty-bitmaps'] ?? []).filter(
        (b) => b.name.startsWith(prefix) && (keep === undefined || (b.name !== keep && b.name !== twin(keep))),
      );
      if (older.length > 0)
        cleanups.push(async () => {
          const remove = older.map((b) => ({ type: 'block-dirty-bitmap-remove', data: { node, name: b.name } }));
          // One that cannot go must not keep the others: then each on its own.
          await qmp.execute('transaction', { actions: remove }).catch(async () => {
            for (const a of remove) await qmp.execute(a.type, a.data).catch(() => undefined);
          });
        });
    } else {
      const overlay = join(dir!, 'fleece.qcow2');
      await qemuImg(['create', '-q', '-f', 'qcow2', overlay, String(size)], 'backing up a running VM');
      await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': FLEECE, file: { driver: 'file', filename: overlay }, backing: node });
      cleanups.push(() => qmp.execute('blockdev-del', { 'node-name': FLEECE }));
      actions.push({ type: 'blockdev-backup', data: { 'job-id': JOB, device: node, target: FLEECE, sync: 'none', 'auto-dismiss': false } });
      exported = FLEECE;
    }
    if (opts.cbt) for (const b of [next, twin(next)]) actions.push({ type: 'block-dirty-bitmap-add', data: { node, name: b, persistent } });
    // The previous point's bitmaps stay enabled and untouched (still right if this run fails); frozen copies are exported.
    const readBitmaps = opts.cbt && why === undefined ? [SNAP, twin(SNAP)] : [];
    if (readBitmaps.length > 0) {
      for (const [copy, from] of [
        [SNAP, opts.previous!.bitmap!],
        [twin(SNAP), twin(opts.previous!.bitmap!)],
      ] as const) {
        actions.push({ type: 'block-dirty-bitmap-add', data: { node, name: copy, persistent: false, disabled: true } });
        actions.push({ type: 'block-dirty-bitmap-merge', data: { node, target: copy, bitmaps: [from] } });
      }
      // Our own daemon's frozen copies (not persistent) end with it.
      if (!opts.offline)
        cleanups.push(async () => {
          for (const b of readBitmaps) await qmp.execute('block-dirty-bitmap-remove', { node, name: b }).catch(() => undefined);
        });
    }
    if (actions.length > 0) await qmp.execute('transaction', { actions });
    if (!opts.offline)
      cleanups.push(async () => {
        await qmp.execute('block-job-cancel', { device: JOB, force: true }).catch(() => undefined);
        for (let i = 0; i < 500; i++) {
          const jobs = await qmp.execute<{ id: string; status: string }[]>('query-jobs');
          const j = jobs.find((x) => x.id === JOB);
          if (!j) return;
          if (j.status === 'concluded' || j.status === 'null') await qmp.execute('job-dismiss', { id: JOB }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 10));
        }
      });

    let nbdSocket = opts.offline?.nbdSocket;
    if (nbdSocket === undefined) {
      nbdSocket = join(dir!, 'nbd.sock');
      await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbdSocket } } });
      cleanups.push(() => qmp.execute('nbd-server-stop'));
    }
    await qmp.execute('block-export-add', {
      type: 'nbd',
      id: EXPORT,
      'node-name': exported,
      name: 'fleece',
      writable: false,
      ...(readBitmaps.length ? { bitmaps: readBitmaps } : {}),
    });
    // Our own daemon closes its export as it exits.
    if (!opts.offline)
      cleanups.push(async () => {
        const gone = new Promise<void>((r) => {
          const off = qmp.onEvent((e) => {
            if (e.event === 'BLOCK_EXPORT_DELETED' && e.data?.['id'] === EXPORT) {
              off();
              r();
            }
          });
          setTimeout(() => {
            off();
            r();
          }, 5000).unref();
        });
        await qmp.execute('block-export-del', { id: EXPORT, mode: 'hard' });
        await gone;
      });

    const facts = opts.offline
      ? undefined
      : {
          vcpus: (await qmp.execute<unknown[]>('query-cpus-fast')).length,
          memoryMiB: Math.round((await qmp.execute<{ 'base-memory': number }>('query-memory-size-summary'))['base-memory'] / 1048576),
        };
    const hash = (note: string): ChangeTracking => ({ method: opts.previous === undefined ? 'full' : 'hash', note, ...(opts.cbt ? { bitmap: next } : {}) });
    let tracking: ChangeTracking = !opts.cbt
      ? { method: opts.previous === undefined ? 'full' : 'hash' }
      : why === undefined
        ? { method: 'cbt', bitmap: next }
        : hash(why);
    const source = await NbdDiskSource.open(
      opts.offline?.path ?? spec,
      { socket: nbdSocket, exportName: 'fleece' },
      // A CBT incremental of an image file reads its changed blocks from our new storage daemon, which answers a 1 MiB
      // read from the page cache in about a millisecond. The pipeline's whole window at once (eight reads on two
      // cores) only made the first block reach a worker later and the daemon fault in a buffer for each: with two in
      // flight the data step took 102–104 ms against 107–118 (52 blocks; two reads of 1 MiB still outrun the
      // workers' 0.5 GB/s from a disk). Fulls and runs without a bitmap keep the whole window.
      { dirtyBitmaps: readBitmaps, onClose: cleanup, ...(opts.offline && readBitmaps.length > 0 ? { readsInFlight: 2 } : {}) },
    );
    if (source.cbtProblem !== undefined) tracking = hash(source.cbtProblem);
    const committed = opts.offline
      ? async (): Promise<void> => undefined
      : async (): Promise<void> => {
          // The point is in: the bitmaps of older points of this job go (the monitor connection is new: the old one closed with the source).
          const q = await QmpClient.connect(socket).catch(() => undefined);
          if (!q) return;
          try {
            const n = (await q.execute<NodeInfo[]>('query-named-block-nodes')).find((x) => x['node-name'] === node);
            for (const b of n?.['dirty-bitmaps'] ?? []) {
              if (b.name.startsWith(prefix) && b.name !== next && b.name !== twin(next))
                await q.execute('block-dirty-bitmap-remove', { node, name: b.name }).catch(() => undefined);
            }
          } finally {
            q.close();
          }
        };
    return { source, format: info.drv, tracking, committed, ...(facts ? { facts } : {}) };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function checkBitmap(info: NodeInfo, name: string | undefined): string | undefined {
  if (name === undefined) return 'no bitmap from the previous point (the first CBT run, or the previous run could not add one)';
  for (const n of [name, twin(name)]) {
    const b = info['dirty-bitmaps']?.find((x) => x.name === n);
    if (!b) return `bitmap ${n} is missing (the VM was restarted without it, or it was removed)`;
    if (b.inconsistent) return `bitmap ${n} is inconsistent (QEMU did not close the image cleanly)`;
    if (!b.recording) return `bitmap ${n} is disabled: writes may have gone untracked`;
  }
  return undefined;
}

/** Removes the export, NBD server, job, frozen bitmaps and overlay node a killed run left in the VM. */
async function removeLeftovers(qmp: QmpClient, node: string, nodes: readonly NodeInfo[]): Promise<void> {
  const ignore = (): undefined => undefined;
  await qmp.execute('block-export-del', { id: EXPORT, mode: 'hard' }).catch(ignore);
  await qmp.execute('nbd-server-stop').catch(ignore);
  if ((await qmp.execute<{ id: string }[]>('query-jobs')).some((j) => j.id === JOB)) {
    await qmp.execute('block-job-cancel', { device: JOB, force: true }).catch(ignore);
    for (let i = 0; i < 500 && (await qmp.execute<{ id: string }[]>('query-jobs')).some((j) => j.id === JOB); i++) {
      await qmp.execute('job-dismiss', { id: JOB }).catch(ignore);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  for (const b of [SNAP, twin(SNAP)])
    if (nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps']?.some((x) => x.name === b))
      await qmp.execute('block-dirty-bitmap-remove', { node, name: b }).catch(ignore);
  for (let i = 0; i < 100 && nodes.some((n) => n['node-name'] === FLEECE); i++) {
    // The export goes asynchronously; the node can be deleted once nothing uses it.
    if (
      await qmp.execute('blockdev-del', { 'node-name': FLEECE }).then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 20));
  }
}
