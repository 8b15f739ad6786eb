import { randomBytes } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';
import type { LabHost } from './types.js';

/** A lab's id: 6 lowercase hex digits, short enough for `lfb<id>t<n>` to fit a 15-character interface name. */
export function newLabId(): string {
  return randomBytes(3).toString('hex');
}

/** The /24's first three octets ("10.99.0.0/24" → "10.99.0"); only /24 lab networks exist. */
export function subnetBase(subnet: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(subnet);
  if (!m || m.slice(1, 4).some((o) => Number(o) > 255))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `the lab network must be a /24 such as 10.99.0.0/24, not "${subnet}"`);
  return `${m[1]}.${m[2]}.${m[3]}`;
}

/**
 * A MAC in QEMU's locally administered range 52:54:00, from the lab id and the
 * VM's index: distinct within a lab, and a VM of another lab (a leftover not
 * removed yet) never shares it.
 */
export function labMac(labId: string, index: number): string {
  if (!/^[0-9a-f]{1,6}$/.test(labId)) throw new LifeboatError('LFB_ERR_INTERNAL', `lab id "${labId}" is not 1-6 hex digits`);
  if (!Number.isInteger(index) || index < 0 || index > 239)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a lab holds at most 240 VMs, not ${index + 1}`);
  const id = parseInt(labId, 16);
  // Two bytes of the id and one of the index: 52:54:00:<id hi>:<id lo>:<index>.
  const bytes = [(id >> 8) & 0xff, id & 0xff, index];
  return ['52', '54', '00', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** A job name as a DNS label: lowercase letters, digits and hyphens, not starting or ending with a hyphen, ≤ 63 characters. */
export function dnsName(job: string): string {
  const s = job
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return s === '' ? 'vm' : s;
}

/** The lab's hosts in boot order: MAC from the id, IP .10 + index, unique DNS-safe names (a repeated job gets -2, -3…). */
export function planLabHosts(labId: string, subnet: string, jobs: readonly string[]): LabHost[] {
  const base = subnetBase(subnet);
  if (jobs.length > 240) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a lab holds at most 240 VMs, not ${jobs.length}`);
  const used = new Set<string>();
  return jobs.map((job, i) => {
    const stem = dnsName(job);
    let name = stem;
    for (let n = 2; used.has(name); n++) name = `${stem.slice(0, 60)}-${n}`;
    used.add(name);
    return { name, mac: labMac(labId, i), ip: `${base}.${10 + i}` };
  });
}
