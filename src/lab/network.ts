/**
 * The lab network: a namespace `lfb-lab-<id>` holding a bridge with the lab's
 * .1 address and dnsmasq, and nothing else: no other interface, no route, no
 * forwarding, so what is on the bridge reaches only the bridge. VMs join
 * through taps made in the host (QEMU opens them by name) and then moved onto
 * the bridge. The record is written before each thing is made, so a kill at
 * any point leaves nothing removeLeftoverLabs cannot find.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, fromFsError, systemClock } from '../core/index.js';
import type { ExecResult, LabHost, LabNetwork, LabNetworkOptions } from './types.js';
import { assertRoot, execInNetns, findTool, ip, killAll, linkDelete, linkExists, netnsAdd, netnsDelete, netnsExists, netnsPids } from './netns.js';
import { dnsmasqFiles, LAB_BRIDGE, LAB_DOMAIN, removeDnsmasqFiles, startDnsmasq, stopDnsmasq } from './dnsmasq.js';
import {
  createLabRecord,
  labRecordPath,
  processStart,
  readLabRecord,
  removeLabRecord,
  selfRef,
  updateLabRecord,
  type LabRecord,
  type ProcessRef,
} from './lab-record.js';

export { recordLabSession, forgetLabSession } from './lab-record.js';

/** Default deadline of `exec`: probes pass their own; nothing run in a lab should hold it for long. */
const EXEC_TIMEOUT_MS = 60_000;

export const labNetnsName = (id: string): string => `lfb-lab-${id}`;
export const labTapName = (id: string, index: number): string => `lfb${id}t${index}`;
/**
 * `ip netns exec` bind-mounts the files of /etc/netns/<ns>/ over /etc: a lab's
 * resolv.conf there makes programs run inside it (test scripts, node) resolve
 * the VMs' names through the lab's dnsmasq instead of the host's resolver.
 */
export const labEtcDir = (netns: string): string => join('/etc/netns', netns);

/** The alias put on the namespace's loopback: names the owner even when the record is lost. */
export const ownerAlias = (owner: ProcessRef): string => `lifeboat-lab owner=${owner.pid}:${owner.start}`;
export function parseOwnerAlias(alias: string | undefined): ProcessRef | undefined {
  const m = /^lifeboat-lab owner=(\d+):(\d+)$/.exec(alias ?? '');
  return m ? { pid: Number(m[1]), start: m[2]! } : undefined;
}

function invalid(message: string): LifeboatError {
  return new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `virtual lab: ${message}`);
}

/** Checks the plan and returns the subnet's first three octets ("10.99.0"). */
function checkOptions(o: LabNetworkOptions): string {
  if (!/^[0-9a-f]{1,6}$/.test(o.id)) throw invalid(`lab id "${o.id}" must be 1 to 6 lowercase hex digits`);
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(o.subnet);
  if (!m || [m[1], m[2], m[3]].some((x) => Number(x) > 255)) throw invalid(`subnet "${o.subnet}" must be a /24 such as 10.99.0.0/24`);
  const prefix = `${Number(m[1])}.${Number(m[2])}.${Number(m[3])}`;
  const seen = new Set<string>();
  for (const h of o.hosts) {
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(h.name)) throw invalid(`host name "${h.name}" is not a DNS label (letters, digits, inner hyphens)`);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(h.mac)) throw invalid(`MAC "${h.mac}" of ${h.name} is not six hex pairs`);
    const last = h.ip.startsWith(`${prefix}.`) ? Number(h.ip.slice(prefix.length + 1)) : NaN;
    if (!/^\d{1,3}$/.test(h.ip.slice(prefix.length + 1)) || !(last >= 2 && last <= 254))
      throw invalid(`address ${h.ip} of ${h.name} is not a host address of ${o.subnet} other than the gateway ${prefix}.1`);
    for (const key of [`name ${h.name.toLowerCase()}`, `MAC ${h.mac.toLowerCase()}`, `address ${h.ip}`]) {
      if (seen.has(key)) throw invalid(`two hosts have the same ${key}`);
      seen.add(key);
    }
  }
  return prefix;
}

/**
 * Makes the lab network: record, namespace (loopback up, owner alias),
 * bridge with <subnet>.1/24, forwarding off, dnsmasq listening. On a failure
 * what was made is removed before the error is thrown.
 */
export async function createLabNetwork(opts: LabNetworkOptions): Promise<LabNetwork> {
  const prefix = checkOptions(opts);
  assertRoot(`making lab ${opts.id}`);
  findTool('ip');
  findTool('dnsmasq');
  const { id, stateDir } = opts;
  const netns = labNetnsName(id);
  const gateway = `${prefix}.1`;
  const existing = await readLabRecord(labRecordPath(stateDir, id));
  if (existing !== undefined)
    throw new LifeboatError(
      'LFB_ERR_LAB',
      `making lab ${id}: its record ${labRecordPath(stateDir, id)} exists (owner pid ${existing.owner.pid}); removeLeftoverLabs removes a lab whose owner died`,
    );
  if (await netnsExists(netns)) throw new LifeboatError('LFB_ERR_LAB', `making lab ${id}: network namespace ${netns} exists already`);
  const owner = selfRef();
  const rec: LabRecord = { version: 1, id, netns, subnet: opts.subnet, owner, createdAt: systemClock.now().toISOString(), taps: [], sessions: [] };
  await createLabRecord(stateDir, rec);
  const lab = new Lab(opts, netns, gateway);
  let madeNetns = false;
  try {
    await netnsAdd(netns);
    madeNetns = true;
    await ip(['-n', netns, 'link', 'set', 'dev', 'lo', 'alias', ownerAlias(owner)], `marking ${netns} with its owner`);
    await ip(['-n', netns, 'link', 'set', 'dev', 'lo', 'up'], `bringing up the loopback of ${netns}`);
    // A new namespace starts with forwarding off; set it anyway, so the lab's isolation never rests on a host default.
    await ip(['netns', 'exec', netns, '/bin/sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward'], `turning forwarding off in ${netns}`);
    await ip(['-n', netns, 'link', 'add', 'name', LAB_BRIDGE, 'type', 'bridge'], `making the bridge of ${netns}`);
    await ip(['-n', netns, 'addr', 'add', `${gateway}/24`, 'dev', LAB_BRIDGE], `giving the bridge of ${netns} its address`);
    await ip(['-n', netns, 'link', 'set', 'dev', LAB_BRIDGE, 'up'], `bringing up the bridge of ${netns}`);
    await writeResolvConf(netns, gateway);
    const files = dnsmasqFiles(stateDir, id);
    const dns = await startDnsmasq({ netns, gateway, subnetBase: `${prefix}.0`, hosts: opts.hosts, files });
    lab.dnsmasq = dns;
    await updateLabRecord(stateDir, id, (r) => ({ ...r, dnsmasq: dns }));
  } catch (err) {
    // A namespace this call did not make (one of the same name made meanwhile by another process) is not its to remove.
    if (madeNetns) await lab.destroy().catch(() => undefined);
    else await removeLabRecord(stateDir, id).catch(() => undefined);
    throw err;
  }
  return lab;
}

async function writeResolvConf(netns: string, gateway: string): Promise<void> {
  const dir = labEtcDir(netns);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'resolv.conf'), `nameserver ${gateway}\nsearch ${LAB_DOMAIN}\n`);
  } catch (err) {
    throw fromFsError(err, `writing the resolver configuration of ${netns}`, dir);
  }
}

class Lab implements LabNetwork {
  readonly id: string;
  readonly netns: string;
  readonly gateway: string;
  readonly hosts: readonly LabHost[];
  dnsmasq: ProcessRef | undefined;
  private readonly stateDir: string;
  private readonly taps = new Set<string>();
  private destroying: Promise<void> | undefined;

  constructor(o: LabNetworkOptions, netns: string, gateway: string) {
    this.id = o.id;
    this.netns = netns;
    this.gateway = gateway;
    this.hosts = o.hosts;
    this.stateDir = o.stateDir;
  }

  private async recordTap(tap: string): Promise<void> {
    if (this.destroying) throw new LifeboatError('LFB_ERR_LAB', `lab ${this.id} is removed: no tap can be added`);
    if (this.taps.has(tap)) return;
    this.taps.add(tap);
    await updateLabRecord(this.stateDir, this.id, (r) => (r.taps.includes(tap) ? r : { ...r, taps: [...r.taps, tap] }));
  }

  async createTap(index: number): Promise<string> {
    if (!Number.isInteger(index) || index < 0 || index > 9999) throw invalid(`tap index ${index} must be an integer from 0 to 9999`);
    const tap = labTapName(this.id, index);
    await this.recordTap(tap);
    await ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap'], `making tap ${tap}`);
    return tap;
  }

  async attachTap(tap: string): Promise<void> {
    await this.recordTap(tap);
    // Called twice, or after a move that succeeded before a failure: the tap is in the lab already.
    if (!(await linkExists(tap, this.netns))) await ip(['link', 'set', 'dev', tap, 'netns', this.netns], `moving ${tap} into ${this.netns}`);
    await ip(['-n', this.netns, 'link', 'set', 'dev', tap, 'master', LAB_BRIDGE, 'up'], `putting ${tap} on the bridge of ${this.netns}`);
  }

  async exec(file: string, args: readonly string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ExecResult> {
    const r = await execInNetns(this.netns, file, args, { timeoutMs: opts.timeoutMs ?? EXEC_TIMEOUT_MS, ...(opts.env ? { env: opts.env } : {}) });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      const rec = await readLabRecord(labRecordPath(this.stateDir, this.id)).catch(() => undefined);
      await removeLab({
        netns: this.netns,
        taps: [...new Set([...this.taps, ...(rec?.taps ?? [])])],
        dnsmasq: this.dnsmasq ?? rec?.dnsmasq,
      });
      await removeDnsmasqFiles(dnsmasqFiles(this.stateDir, this.id));
      await removeLabRecord(this.stateDir, this.id);
    })();
    // A failed removal may be retried by calling destroy again.
    return this.destroying.catch((err: unknown) => {
      this.destroying = undefined;
      throw err;
    });
  }
}

/**
 * Removes a lab's processes, taps, namespace and its /etc/netns folder; each
 * step tolerates what is already gone. Shared by destroy() and removeLeftoverLabs.
 */
export async function removeLab(o: { netns: string; taps: readonly string[]; dnsmasq: ProcessRef | undefined }): Promise<void> {
  if (o.dnsmasq) await stopDnsmasq(o.dnsmasq);
  // Whatever else still runs inside (a probe past its deadline) would keep the namespace alive after its name is gone.
  const pids = await netnsPids(o.netns);
  if (pids.length > 0) {
    killAll(pids);
    await waitGone(pids);
  }
  for (const tap of o.taps) {
    if (await linkExists(tap, o.netns).catch(() => false)) await linkDelete(tap, o.netns);
    if (await linkExists(tap)) await linkDelete(tap);
  }
  await netnsDelete(o.netns);
  await rm(labEtcDir(o.netns), { recursive: true, force: true }).catch((err: unknown) => {
    throw fromFsError(err, `removing the resolver configuration of ${o.netns}`, labEtcDir(o.netns));
  });
}

async function waitGone(pids: readonly number[]): Promise<void> {
  const deadline = performance.now() + 3000;
  while (pids.some((p) => processStart(p) !== undefined) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
