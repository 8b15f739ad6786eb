import { basename } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { VmConfig, VmDiskConfig } from '../format/root.js';

const BUSES = ['virtio', 'scsi', 'sata', 'ide', 'nvme'] as const;

/**
 * The VM configuration stored with every restore point: what the user gave
 * with --vm-config, completed with defaults that boot a typical Linux guest.
 */
export function resolveVmConfig(jobName: string, given: Partial<VmConfig> | null, disks: readonly { path: string; size: number; format?: string }[]): VmConfig {
  const g = given ?? {};
  const vm: VmConfig = {
    name: g.name ?? jobName,
    vcpus: g.vcpus ?? 2,
    memoryMiB: g.memoryMiB ?? 2048,
    firmware: g.firmware ?? 'bios',
    machine: g.machine ?? 'q35',
    disks: disks.map((d, i): VmDiskConfig => {
      const gd = g.disks?.[i];
      return {
        name: gd?.name ?? `disk${i}`,
        bus: gd?.bus ?? 'virtio',
        sizeBytes: d.size,
        source: /^nbd/.test(d.path) ? d.path : basename(d.path),
        ...(d.format ? { format: d.format } : {}),
      };
    }),
  };
  return vm;
}

/** Validates a --vm-config document (partial: every field is optional). */
export function validateVmConfig(doc: unknown, file: string): Partial<VmConfig> {
  const bad = (what: string): never => {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--vm-config ${file}: ${what}`);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) bad('must be a JSON object');
  const o = doc as Record<string, unknown>;
  const known = ['name', 'vcpus', 'memoryMiB', 'firmware', 'machine', 'disks'];
  for (const k of Object.keys(o)) if (!known.includes(k)) bad(`unknown field "${k}" (fields: ${known.join(', ')})`);
  if (o['name'] !== undefined && (typeof o['name'] !== 'string' || o['name'] === '')) bad('name must be a non-empty string');
  if (o['vcpus'] !== undefined && (!Number.isInteger(o['vcpus']) || (o['vcpus'] as number) < 1 || (o['vcpus'] as number) > 512))
    bad('vcpus must be a whole number from 1 to 512');
  if (o['memoryMiB'] !== undefined && (!Number.isInteger(o['memoryMiB']) || (o['memoryMiB'] as number) < 16)) bad('memoryMiB must be a whole number ≥ 16');
  if (o['firmware'] !== undefined && o['firmware'] !== 'bios' && o['firmware'] !== 'uefi') bad('firmware must be "bios" or "uefi"');
  if (o['machine'] !== undefined && typeof o['machine'] !== 'string') bad('machine must be a string');
  if (o['disks'] !== undefined) {
    if (!Array.isArray(o['disks'])) bad('disks must be an array');
    (o['disks'] as unknown[]).forEach((d, i) => {
      if (typeof d !== 'object' || d === null) bad(`disks[${i}] must be an object`);
      const dd = d as Record<string, unknown>;
      if (dd['name'] !== undefined && (typeof dd['name'] !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(dd['name'])))
        bad(`disks[${i}].name must be 1-64 letters, digits, '.', '_' or '-'`);
      if (dd['bus'] !== undefined && !(BUSES as readonly unknown[]).includes(dd['bus'])) bad(`disks[${i}].bus must be one of ${BUSES.join(', ')}`);
    });
  }
  return o as Partial<VmConfig>;
}
