/**
 * Instant-recovery sessions as GET /api/v1/sessions gives them, and what the
 * sessions and screen pages compute from them.
 */
import { query, seg } from '../../api';

export interface SessionDisk {
  name: string;
  size: number;
  nfsPath: string;
  nbdExport: string;
  /** Bytes the overlay holds: what clients and the VM wrote. */
  writtenBytes: number;
  /** Bytes clients read and wrote (NFS and NBD) since the server opened the session. */
  io: { readBytes: number; writtenBytes: number };
}

export interface SessionVm {
  pid: number;
  accel: 'kvm' | 'tcg';
  accelNote?: string;
  network: string;
  startedAt: string;
  state: 'running' | 'exited';
  exit?: string;
  serialLog: string;
  qmpSocket: string;
  /** The VM's screen (VNC on a unix socket); absent for a VM an older server booted. */
  vncSocket?: string;
}

export interface Migration {
  to: string;
  format: 'raw' | 'qcow2';
  mode: 'mirror' | 'copy';
  state: 'copying' | 'synced' | 'finishing' | 'done' | 'failed';
  problem?: string;
  rateBytesPerSec: number | null;
  startedAt: string;
  finishedAt?: string;
  disks: { name: string; size: number; target: string; copied: number }[];
}

export interface Session {
  repo: string;
  name: string;
  job: string;
  pointId: string;
  createdAt: string;
  state: 'running' | 'failed';
  problem?: string;
  vmx: string;
  disks: SessionDisk[];
  /** Free bytes and size of the file system holding the overlays (null when the server could not ask). */
  overlayFreeBytes: number | null;
  overlayTotalBytes: number | null;
  vm?: SessionVm;
  migration?: Migration;
}

/** The API path of one session (and of its sub-resources after it), with the repository that has it. */
export const sessionPath = (s: { repo: string; name: string }, sub = ''): string => `/sessions/${seg(s.name)}${sub}${query({ repo: s.repo })}`;

/** Bytes in the session's overlays: what was written since it started. */
export const overlayBytes = (s: Session): number => s.disks.reduce((a, d) => a + d.writtenBytes, 0);

/** How far a migration's copy is, over all its disks. */
export function migrationProgress(m: Migration): { copied: number; total: number } {
  return m.disks.reduce((a, d) => ({ copied: a.copied + Math.min(d.copied, d.size), total: a.total + d.size }), { copied: 0, total: 0 });
}

/** A migration that still moves (the page follows it live). */
export const migrating = (m: Migration | undefined): boolean => m !== undefined && (m.state === 'copying' || m.state === 'synced' || m.state === 'finishing');

/** Whether the session's VM has a screen the console can show now. */
export const hasScreen = (s: Session): boolean => s.vm?.state === 'running' && s.vm.vncSocket !== undefined;

/** Why there is no screen, in words, or undefined when there is one. */
export function noScreenReason(s: Session): string | undefined {
  if (s.vm === undefined) return 'this session has no VM Lifeboat booted (start a session with "Boot the VM")';
  if (s.vm.state !== 'running') return `its VM is not running (${s.vm.exit ?? 'exited'})`;
  if (s.vm.vncSocket === undefined) return 'its VM was booted by an older Lifeboat without a screen: stop the session and start it again';
  return undefined;
}

/** Rates of one session between two listings (bytes per second). */
export interface SessionRates {
  /** What the overlays took: new data written. */
  readonly growth: number;
  /** What clients read and wrote, NFS and NBD alike (a rewrite of the same bytes counts each time). */
  readonly read: number;
  readonly write: number;
}

const sumIo = (s: Session, k: 'readBytes' | 'writtenBytes'): number => s.disks.reduce((a, d) => a + (d.io?.[k] ?? 0), 0);

/**
 * Rates between two listings of the sessions: overlay growth and client
 * reads and writes per second since the last look. A counter that went down
 * (the server restarted and counts from zero) gives no rate until the next look.
 */
export class RateMeter {
  private last = new Map<string, { at: number; overlay: number; read: number; write: number }>();

  /** Rates by session key (repo/name), from a new listing taken at `at` (ms). */
  update(sessions: readonly Session[], at: number): Map<string, SessionRates> {
    const rates = new Map<string, SessionRates>();
    const next = new Map<string, { at: number; overlay: number; read: number; write: number }>();
    for (const s of sessions) {
      const key = `${s.repo}/${s.name}`;
      const now = { at, overlay: overlayBytes(s), read: sumIo(s, 'readBytes'), write: sumIo(s, 'writtenBytes') };
      const before = this.last.get(key);
      if (before && at > before.at && now.read >= before.read && now.write >= before.write) {
        const per = (a: number, b: number): number => Math.max(0, ((a - b) * 1000) / (at - before.at));
        rates.set(key, { growth: per(now.overlay, before.overlay), read: per(now.read, before.read), write: per(now.write, before.write) });
      }
      next.set(key, now);
    }
    this.last = next;
    return rates;
  }
}

/** A session whose overlays' file system has less than this share free is near full. */
export const OVERLAY_NEAR_FULL = 0.1;

/** Whether the file system holding the session's overlays is near full. */
export const overlayNearFull = (s: Session): boolean =>
  s.overlayFreeBytes !== null && s.overlayTotalBytes !== null && s.overlayTotalBytes > 0 && s.overlayFreeBytes / s.overlayTotalBytes < OVERLAY_NEAR_FULL;
