import type { CowOverlay, ReadableDisk } from '../blockdev/index.js';
import type { Accel, QemuVm, VmStatus } from '../qemu/index.js';
import type { DatastoreDisk } from './datastore-fs.js';
import type { MigrationState } from './migration.js';
import type { SessionRecord } from './session-store.js';

export interface SessionInfo {
  readonly name: string;
  readonly job: string;
  readonly pointId: string;
  readonly createdAt: string;
  readonly dir: string;
  readonly vmx: string;
  readonly disks: readonly {
    readonly name: string;
    readonly size: number;
    readonly nfsPath: string;
    readonly nbdExport: string;
    readonly writtenBytes: number;
    /** Bytes clients read from and wrote to the disk (NFS and NBD alike) since this server opened the session: rates come from two readings. */
    readonly io: { readonly readBytes: number; readonly writtenBytes: number };
  }[];
  /** Free bytes of the file system holding the session's overlays (null when it cannot be asked). */
  readonly overlayFreeBytes: number | null;
  /** Size of that file system (null when it cannot be asked). */
  readonly overlayTotalBytes: number | null;
  readonly state: 'running' | 'failed';
  readonly problem?: string;
  /** The VM Lifeboat booted for this session (`--boot`). */
  readonly vm?: VmStatus;
  readonly migration?: MigrationState;
}

export interface BootOptions {
  /** Default: kvm when /dev/kvm is usable (falling back to TCG if the guest fails under it), else tcg. */
  readonly accel?: Accel | undefined;
  readonly network?: string | undefined;
}

export interface StartOptions {
  readonly name?: string | undefined;
  /** An absolute folder to hold the session's folder (default <repo>/cache/instant). */
  readonly cacheDir?: string | undefined;
  /** Publish only these disks of the point (indexes); default all. */
  readonly disks?: readonly number[] | undefined;
  readonly boot?: BootOptions | undefined;
}

/** An open session: one base, overlay and datastore disk per disk of its record, in the record's order. */
export interface Open {
  rec: SessionRecord;
  readonly bases: ReadableDisk[];
  readonly overlays: CowOverlay[];
  /** What the datastore publishes: the same overlay objects NBD serves. */
  readonly disks: DatastoreDisk[];
  vm?: QemuVm;
}
