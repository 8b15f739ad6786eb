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

/**
 * Overlay growth between two listings of the sessions: bytes per second the
 * overlays took since the last look (the API counts what was written, not
 * each read or write, so this is the rate of new data, not of all I/O).
 */
export class GrowthMeter {
  private last = new Map<string, { at: number; bytes: number }>();

  /** Rates by session key (repo/name), from a new listing taken at `at` (ms). */
  update(sessions: readonly Session[], at: number): Map<string, number> {
    const rates = new Map<string, number>();
    const next = new Map<string, { at: number; bytes: number }>();
    for (const s of sessions) {
      const key = `${s.repo}/${s.name}`;
      const bytes = overlayBytes(s);
      const before = this.last.get(key);
      if (before && at > before.at) rates.set(key, Math.max(0, ((bytes - before.bytes) * 1000) / (at - before.at)));
      next.set(key, { at, bytes });
    }
    this.last = next;
    return rates;
  }
}
