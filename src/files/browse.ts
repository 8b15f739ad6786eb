import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { GuestFs } from './guest-fs.js';
import { Guestfish, guestfishEnv, isMountPoint, unmountFuse } from './guestfish.js';
import { fsIdOf, mountDirOf } from './paths.js';

/** Where the appliance reads a disk: an NBD export on a unix socket or on TCP. */
export interface Drive {
  readonly server: { readonly socket: string } | { readonly host: string; readonly port: number };
  readonly exportName: string;
}

/** A disk, partition, LVM volume or file system of the point, as `files ls` shows it. */
export interface Volume {
  readonly id: string;
  readonly kind: 'disk' | 'partition' | 'lvm-volume';
  readonly device: string;
  readonly size: number;
  /** The file system type (vfs-type), or the partition table of a disk (gpt, msdos); absent when there is none. */
  readonly type?: string;
  readonly label?: string;
  /** A readable file system, mounted in the tree. */
  readonly mounted: boolean;
  /** Why a file system did not mount. */
  readonly problem?: string;
}

export interface BrowseOptions {
  readonly drives: readonly Drive[];
  /** A private folder for the appliance's temporary files. */
  readonly workDir: string;
  /**
   * `files mount`: the tree goes here (an empty folder), each file system at
   * <mountAt>/<fs id>, served by mount-local (FUSE) until close(). Without
   * it, the guestfish server stays free for the appliance's own calls
   * (`guest`), which is how files ls|get|find read.
   */
  readonly mountAt?: string;
  readonly progress?: (line: string) => void;
  /** Told the processes as soon as they exist, so a kill -9 of this process can be cleaned up after. */
  readonly onProcesses?: (p: { guestfishPid: number; qemuPid?: number }) => Promise<void>;
}

const READAHEAD_SECTORS = 8192;

/** Types that are never mounted: they hold no files (swap) or libguestfs does not know them. */
const NOT_FILE_SYSTEMS = new Set(['unknown', 'swap', 'LVM2_member', 'crypto_LUKS']);

function serverArg(d: Drive): string {
  return 'socket' in d.server ? `server:unix:${d.server.socket}` : `server:${d.server.host}:${d.server.port}`;
}

/**
 * One browse of a point's disks: one libguestfs appliance reads them over NBD
 * (read-only: libguestfs puts a throw-away qcow2 overlay of its own between
 * the appliance and the export) and mounts every readable file system
 * read-only at its own folder. The guest's file systems are parsed by the
 * appliance's kernel only. They are read through the appliance's calls
 * (`guest`, guest-fs.ts), or, for `files mount`, exposed on the host as a
 * FUSE tree (mount-local), which holds the guestfish server while mounted.
 */
export class BrowseSession {
  private closed = false;
  private runnerEnded: string | undefined;

  private constructor(
    readonly volumes: readonly Volume[],
    /** The FUSE tree of `files mount`; undefined for a browse read through `guest`. */
    readonly mountAt: string | undefined,
    private readonly gf: Guestfish,
    readonly qemuPid: number | undefined,
    private readonly workDir: string,
  ) {}

  get guestfishPid(): number {
    return this.gf.pid;
  }

  fsIds(): string[] {
    return this.volumes.filter((v) => v.mounted).map((v) => v.id);
  }

  /** The guest's file systems through the appliance's calls; not while a FUSE tree holds the server. */
  get guest(): GuestFs {
    if (this.mountAt !== undefined)
      throw new LifeboatError('LFB_ERR_INTERNAL', "a browse with a FUSE tree is read through the tree, not the appliance's calls");
    if (this.closed) throw new LifeboatError('LFB_ERR_GUESTFS', 'the browse has been closed');
    return (this.guestFs ??= new GuestFs(this.gf, this.workDir));
  }

  private guestFs: GuestFs | undefined;

  static async open(o: BrowseOptions): Promise<BrowseSession> {
    const progress = o.progress ?? (() => undefined);
    const tmp = join(o.workDir, 'guestfs-tmp');
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    if (o.mountAt !== undefined) await mkdir(o.mountAt, { recursive: true });
    const gf = await Guestfish.listen(guestfishEnv(tmp), join(o.workDir, 'guestfish.log'));
    let qemuPid: number | undefined;
    try {
      await o.onProcesses?.({ guestfishPid: gf.pid });
      for (const d of o.drives) await gf.must('add-drive', d.exportName, 'protocol:nbd', serverArg(d), 'readonly:true', 'format:raw');
      progress('booting the libguestfs appliance (about 15 to 30 s without KVM)');
      const started = performance.now();
      await gf.must('run');
      qemuPid = await gf.qemuPid();
      await o.onProcesses?.({ guestfishPid: gf.pid, ...(qemuPid !== undefined ? { qemuPid } : {}) });
      progress(`appliance up in ${((performance.now() - started) / 1000).toFixed(1)} s; looking at the disks`);
      const volumes = await inspect(gf);
      // 4 MiB of readahead instead of the kernel's 128 KiB: a file's download is then fewer, larger NBD requests, each a
      // round trip to Lifeboat's export (a cold 200 MiB download took 3.5 s instead of 4.0 to 6.0 in-process, 5.3 to 5.7
      // instead of 5.3 to 6.6 through serve, on a loaded 2-core machine; folders of small files gain nothing).
      for (const v of volumes) await gf.remote('blockdev-setra', v.device, String(READAHEAD_SECTORS));
      const mountable = volumes.filter((v) => v.type !== undefined && v.kind !== 'disk' && !NOT_FILE_SYSTEMS.has(v.type));
      const wholeDisks = volumes.filter(
        (v) => v.kind === 'disk' && v.type !== undefined && !NOT_FILE_SYSTEMS.has(v.type) && !['gpt', 'msdos'].includes(v.type),
      );
      const candidates = [...wholeDisks, ...mountable];
      // mkmountpoint makes folders in the appliance's root before anything is mounted: one per file system, LVs nested as vg/lv.
      const made = new Set<string>();
      for (const v of candidates) {
        const parts = mountDirOf(v.id)
          .split('/')
          .filter((p) => p !== '');
        for (let i = 1; i <= parts.length; i++) {
          const dir = `/${parts.slice(0, i).join('/')}`;
          if (!made.has(dir)) await gf.must('mkmountpoint', dir);
          made.add(dir);
        }
      }
      const mounted = new Map<string, string | undefined>();
      for (const v of candidates) {
        const r = await gf.remote('mount-ro', v.device, mountDirOf(v.id));
        mounted.set(v.id, r.ok ? undefined : r.stderr.replace(/^libguestfs: error: /m, '').trim());
      }
      const all = volumes.map((v) =>
        mounted.has(v.id) ? { ...v, mounted: mounted.get(v.id) === undefined, ...(mounted.get(v.id) ? { problem: mounted.get(v.id)! } : {}) } : v,
      );
      // Only an appliance that still answers has found the disks unreadable; one that died or hung on the way failed itself.
      if (!all.some((v) => v.mounted) && !(await gf.remote('ping-daemon')).ok)
        throw new LifeboatError('LFB_ERR_GUESTFS', 'the libguestfs appliance stopped answering while it mounted the file systems', {
          details: { volumes: all },
        });
      if (!all.some((v) => v.mounted))
        throw new LifeboatError(
          'LFB_ERR_NO_FILESYSTEM',
          `the point's disks hold no readable file system (${all.map((v) => `${v.id}: ${v.problem ?? v.type ?? 'nothing known'}`).join('; ') || 'no disks'})`,
          { details: { volumes: all } },
        );
      const s = new BrowseSession(all, o.mountAt, gf, qemuPid, o.workDir);
      if (o.mountAt !== undefined) {
        // FUSE's own inode numbers (not use_ino): the tree is one device, and a tool walking it whole must not take two
        // files of different file systems (or btrfs subvolumes) that share a number for hard links of each other.
        await gf.must('mount-local', o.mountAt, 'readonly:true');
        gf.serveMountLocal((stderr) => (s.runnerEnded = stderr));
      }
      return s;
    } catch (err) {
      if (o.mountAt !== undefined) await unmountFuse(o.mountAt).catch(() => undefined);
      await gf.shutdown(qemuPid);
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Unmounts the tree (if any), ends the appliance and the guestfish server; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.mountAt !== undefined && (await isMountPoint(this.mountAt).catch(() => false))) await unmountFuse(this.mountAt);
    await this.gf.waitMountLocalRun(10_000);
    await this.gf.shutdown(this.qemuPid);
    await rm(join(this.workDir, 'guestfs-tmp'), { recursive: true, force: true });
  }

  /** Why the FUSE server ended early, if it did (the tree is gone then). */
  get ended(): string | undefined {
    return this.runnerEnded;
  }
}

async function sizeOf(gf: Guestfish, device: string): Promise<number> {
  const r = await gf.remote('blockdev-getsize64', device);
  return r.ok ? Number(r.stdout.trim()) : 0;
}

/** Disks, partitions, LVs and the file system on each, as the appliance sees them. */
async function inspect(gf: Guestfish): Promise<Volume[]> {
  const devices = await gf.lines('list-devices');
  const partitions = await gf.lines('list-partitions');
  const lvs = await gf.lines('lvs');
  const types = new Map<string, string>();
  for (const line of await gf.lines('list-filesystems')) {
    const i = line.lastIndexOf(': ');
    if (i > 0) types.set(line.slice(0, i), line.slice(i + 2));
  }
  const out: Volume[] = [];
  const add = async (kind: Volume['kind'], device: string, tableType?: string): Promise<void> => {
    const id = fsIdOf(device, devices);
    if (id === undefined) return;
    const type = types.get(device) ?? tableType;
    const hasFs = types.has(device) && !NOT_FILE_SYSTEMS.has(type!);
    const label = hasFs ? (await gf.remote('vfs-label', device)).stdout.trim() : '';
    out.push({ id, kind, device, size: await sizeOf(gf, device), ...(type !== undefined ? { type } : {}), ...(label !== '' ? { label } : {}), mounted: false });
  };
  for (const d of devices) {
    const t = await gf.remote('part-get-parttype', d);
    await add('disk', d, t.ok ? t.stdout.trim() : undefined);
  }
  for (const p of partitions) await add('partition', p);
  for (const lv of lvs) await add('lvm-volume', lv);
  return out;
}
