import type { VmConfig } from '../format/root.js';

/**
 * The files a vSphere user needs to register a recovered VM from the
 * datastore: an ESXi-style descriptor per disk naming its flat extent, and a
 * .vmx built from the VM configuration stored with the restore point.
 */
export function vmdkDescriptor(diskName: string, sizeBytes: number): string {
  const sectors = Math.ceil(sizeBytes / 512);
  const cylinders = Math.max(1, Math.floor(sectors / (255 * 63)));
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    'CID=fffffffe',
    'parentCID=ffffffff',
    'createType="vmfs"',
    '',
    '# Extent description',
    `RW ${sectors} VMFS "${diskName}-flat.vmdk"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.adapterType = "lsilogic"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    'ddb.geometry.heads = "255"',
    'ddb.geometry.sectors = "63"',
    'ddb.virtualHWVersion = "13"',
    '',
  ].join('\n');
}

/** ESXi has no virtio: virtio and scsi disks go on an LSI Logic SCSI controller. */
export function vmx(vm: VmConfig): string {
  const lines = [
    '.encoding = "UTF-8"',
    'config.version = "8"',
    'virtualHW.version = "13"',
    `displayName = "${vm.name.replace(/"/g, '')}"`,
    'guestOS = "otherlinux-64"',
    `memSize = "${vm.memoryMiB}"`,
    `numvcpus = "${vm.vcpus}"`,
    `firmware = "${vm.firmware === 'uefi' ? 'efi' : 'bios'}"`,
  ];
  const next: Record<string, number> = {};
  const controllers = new Set<string>();
  for (const d of vm.disks) {
    const ctl = d.bus === 'sata' ? 'sata0' : d.bus === 'ide' ? 'ide0' : d.bus === 'nvme' ? 'nvme0' : 'scsi0';
    const unit = next[ctl] ?? 0;
    next[ctl] = unit + 1;
    if (!controllers.has(ctl)) {
      controllers.add(ctl);
      lines.push(`${ctl}.present = "TRUE"`);
      if (ctl === 'scsi0') lines.push('scsi0.virtualDev = "lsilogic"');
    }
    lines.push(`${ctl}:${unit}.present = "TRUE"`, `${ctl}:${unit}.fileName = "${d.name}.vmdk"`);
  }
  return lines.join('\n') + '\n';
}
