/**
 * The virtual lab's seams: an isolated network (a namespace with a bridge and
 * a DHCP/DNS server, no route out), the tests run against a lab VM, and the
 * report of a SureBackup run. The orchestrator (`surebackup.ts`) starts VMs
 * through `LabSessions`, which the app implements with instant sessions of the
 * running `serve`: the lab never opens a backup file for writing.
 */

import type { LabVmReport } from '../core/lab-report.js';

/** A VM's place on the lab network: dnsmasq gives `ip` to `mac` and answers `name` in DNS. */
export interface LabHost {
  readonly name: string;
  readonly mac: string;
  readonly ip: string;
}

export interface LabNetworkOptions {
  /** Short id (lowercase hex, ≤ 6 chars) naming the namespace `lfb-lab-<id>` and the taps `lfb<id>t<n>`. */
  readonly id: string;
  /** The lab's /24, e.g. "10.99.0.0/24"; the bridge takes .1, DHCP hands out the hosts' addresses only. */
  readonly subnet: string;
  readonly hosts: readonly LabHost[];
  /** Folder for the lab's record (what to remove after a kill), dnsmasq's pid, lease and log files. */
  readonly stateDir: string;
}

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface LabNetwork {
  readonly id: string;
  /** `lfb-lab-<id>` */
  readonly netns: string;
  /** The bridge's address inside the lab (the VMs' DHCP and DNS server). */
  readonly gateway: string;
  /** Makes a tap in the host's namespace for QEMU to open by name (`-nic tap,ifname=<name>,script=no,downscript=no`), recorded for cleanup. */
  createTap(index: number): Promise<string>;
  /** Moves a tap QEMU has opened into the lab and onto its bridge (QEMU keeps its file descriptor). */
  attachTap(tap: string): Promise<void>;
  /** Runs a program inside the lab's namespace (`ip netns exec`), with a deadline. */
  exec(file: string, args: readonly string[], opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<ExecResult>;
  /** Removes everything the lab made (dnsmasq, taps, bridge, namespace, record); safe to call twice. */
  destroy(): Promise<void>;
}

export type { LabTestResult, LabVmReport } from '../core/lab-report.js';

/** One VM of an application group, in boot order. */
export interface LabVmSpec {
  readonly job: string;
  /** A point id or "latest". */
  readonly point: string;
  readonly bootTimeoutS: number;
  /** Regex on the serial console that means "booted" when the guest runs no guest agent. */
  readonly serialPattern?: string;
  readonly ports: readonly number[];
  readonly urls: readonly string[];
  readonly scripts: readonly string[];
  /** Later VMs start only once this one passed its heartbeat (a DNS or database server first). */
  readonly waitForIt: boolean;
}

export interface SureBackupReport {
  readonly id: string;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly vms: readonly LabVmReport[];
  readonly ok: boolean;
}

/** How the lab starts and stops VMs: instant sessions of the running server, booted with a NIC on a tap. */
export interface LabSessions {
  start(req: { job: string; point: string; name: string; accel?: 'kvm' | 'tcg'; network: string }): Promise<LabSession>;
  stop(name: string): Promise<void>;
  /** Names of the sessions the server has now (to find what a killed lab left). */
  list(): Promise<string[]>;
}

export interface LabSession {
  readonly name: string;
  readonly pointId: string;
  /** The booted VM's files (vmFiles of src/qemu): serial log, QMP and guest-agent sockets. */
  readonly serialLog: string;
  readonly qmpSocket: string;
  readonly qgaSocket: string;
  readonly pid: number;
}
