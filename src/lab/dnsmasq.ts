/**
 * The lab's DHCP and DNS server: dnsmasq inside the namespace, bound to the
 * bridge only, handing each planned MAC its planned address and answering the
 * hosts' names (`web` and `web.lab`), with no upstream server: a name outside
 * the lab is refused, never forwarded.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LifeboatError } from '../core/index.js';
import type { LabHost } from './types.js';
import { findTool } from './netns.js';
import { isAlive, processStart, type ProcessRef } from './lab-record.js';

export const LAB_BRIDGE = 'lfbbr0';
export const LAB_DOMAIN = 'lab';
/** How long dnsmasq may take to listen: it starts in milliseconds; a slow 2-core CI machine gets room. */
const LISTEN_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;

export interface DnsmasqFiles {
  readonly pid: string;
  readonly leases: string;
  readonly log: string;
  /** dnsmasq's standard error: why it refused to start. */
  readonly stderr: string;
}

export const dnsmasqFiles = (stateDir: string, id: string): DnsmasqFiles => ({
  pid: join(stateDir, `lab-${id}.dnsmasq.pid`),
  leases: join(stateDir, `lab-${id}.dnsmasq.leases`),
  log: join(stateDir, `lab-${id}.dnsmasq.log`),
  stderr: join(stateDir, `lab-${id}.dnsmasq.err`),
});

export function dnsmasqArgs(o: { subnetBase: string; hosts: readonly LabHost[]; files: DnsmasqFiles }): string[] {
  return [
    '--keep-in-foreground',
    // No /etc/dnsmasq.conf, /etc/hosts or /etc/resolv.conf: the lab answers its own names only.
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    `--pid-file=${o.files.pid}`,
    // Stays root: the lease and log files are in root's state folder (and Debian's default group "dip" may not exist).
    '--user=root',
    '--group=root',
    `--interface=${LAB_BRIDGE}`,
    '--bind-interfaces',
    '--except-interface=lo',
    `--dhcp-range=${o.subnetBase},static`,
    '--dhcp-authoritative',
    // No router option: the lab has no way out, so the VMs get no default route to try.
    '--dhcp-option=option:router',
    `--domain=${LAB_DOMAIN}`,
    // Names of the lab (qualified or plain) are answered here or are NXDOMAIN; nothing is forwarded.
    `--local=/${LAB_DOMAIN}/`,
    '--domain-needed',
    `--dhcp-leasefile=${o.files.leases}`,
    `--log-facility=${o.files.log}`,
    '--log-dhcp',
    ...o.hosts.flatMap((h) => [`--dhcp-host=${h.mac},${h.ip},${h.name}`, `--host-record=${h.name},${h.name}.${LAB_DOMAIN},${h.ip}`]),
  ];
}

/** Whether dnsmasq `pid` wrote its start line to its log file (it writes it once the file is open). */
function loggedStart(log: string, pid: number): boolean {
  try {
    return readFileSync(log, 'utf8').includes(`dnsmasq[${pid}]: started, version`);
  } catch {
    return false;
  }
}

/** `a.b.c.d` → the little-endian hex /proc/net/{udp,tcp} shows, e.g. 10.99.0.1 → 0100630A. */
function procHex(ip: string): string {
  return ip
    .split('.')
    .map((o) => Number(o).toString(16).toUpperCase().padStart(2, '0'))
    .reverse()
    .join('');
}

/** Whether `pid` (in whatever namespace it runs) has a socket bound to addr:port; /proc/<pid>/net shows the process's namespace. */
function listens(pid: number, proto: 'udp' | 'tcp', addrHex: string, port: number): boolean {
  let table: string;
  try {
    table = readFileSync(`/proc/${pid}/net/${proto}`, 'utf8');
  } catch {
    return false;
  }
  const want = `${addrHex}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return table.split('\n').some((l) => l.trim().split(/\s+/)[1] === want);
}

/**
 * Starts dnsmasq in the namespace, detached (it outlives a killed owner until
 * removeLeftoverLabs ends it), and returns once it listens for DNS on the
 * gateway and for DHCP and has logged its start. `ip netns exec` execs the
 * program, so the child's pid is dnsmasq's.
 */
export async function startDnsmasq(o: {
  netns: string;
  gateway: string;
  subnetBase: string;
  hosts: readonly LabHost[];
  files: DnsmasqFiles;
}): Promise<ProcessRef> {
  const ipFile = findTool('ip');
  const dnsmasq = findTool('dnsmasq');
  const args = ['netns', 'exec', o.netns, dnsmasq, ...dnsmasqArgs(o)];
  const errFd = openSync(o.files.stderr, 'w');
  let pid: number | undefined;
  let exit: string | undefined;
  try {
    const child = spawn(ipFile, args, { stdio: ['ignore', errFd, errFd], detached: true });
    child.on('error', (e) => (exit = e.message));
    child.on('exit', (code, signal) => (exit = code !== null ? `exit ${code}` : `killed by ${signal}`));
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(errFd);
  }
  const cmd = `ip ${args.join(' ')}`;
  const why = async (what: string): Promise<LifeboatError> => {
    const stderr = (await readFile(o.files.stderr, 'utf8').catch(() => '')).trim();
    return new LifeboatError('LFB_ERR_LAB', `starting dnsmasq in ${o.netns}: \`${cmd}\` ${what}: ${stderr || '(no output)'}`, {
      details: { step: 'dnsmasq', command: cmd, stderr },
    });
  };
  if (pid === undefined) throw await why('could not be started');
  const gw = procHex(o.gateway);
  const deadline = performance.now() + LISTEN_TIMEOUT_MS;
  for (;;) {
    if (exit !== undefined) throw await why(`ended (${exit})`);
    // Its sockets come before its log: one that cannot open its log file exits after listening, so the start line
    // in the log is what says it runs (without it, a lab whose dnsmasq was dying now and then counted as made).
    const listening = listens(pid, 'udp', gw, 53) && listens(pid, 'tcp', gw, 53) && listens(pid, 'udp', '00000000', 67);
    if (listening && loggedStart(o.files.log, pid)) break;
    if (performance.now() > deadline) {
      await stopDnsmasq({ pid, start: processStart(pid) ?? '' });
      const what = listening ? `listened on ${o.gateway}:53 and :67 but did not log its start in ${o.files.log}` : `did not listen on ${o.gateway}:53 and :67`;
      throw await why(`${what} within ${LISTEN_TIMEOUT_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const start = processStart(pid);
  if (start === undefined) throw await why('ended');
  return { pid, start };
}

/** Whether `pid` runs dnsmasq (its /proc cmdline), so a reused pid is never killed. */
export function isDnsmasq(pid: number): boolean {
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
    return basename(argv0) === 'dnsmasq';
  } catch {
    return false;
  }
}

/** Ends the lab's dnsmasq (SIGTERM, then SIGKILL) if that pid is still that dnsmasq; idempotent. */
export async function stopDnsmasq(ref: ProcessRef): Promise<void> {
  const same = (): boolean => (ref.start === '' ? processStart(ref.pid) !== undefined : isAlive(ref)) && isDnsmasq(ref.pid);
  if (!same()) return;
  try {
    process.kill(ref.pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  while (same()) {
    if (performance.now() > deadline) {
      try {
        process.kill(ref.pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function removeDnsmasqFiles(files: DnsmasqFiles): Promise<void> {
  for (const f of Object.values(files)) await unlink(f).catch(() => undefined);
}
