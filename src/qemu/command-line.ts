import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { VmConfig, VmDiskConfig } from '../format/root.js';
import { hotplugPortArgs } from './hotplug.js';

export type Accel = 'kvm' | 'tcg';

/** A disk the VM reaches over NBD (never the backup files themselves). */
export interface NbdDisk {
  readonly name: string;
  readonly bus: VmDiskConfig['bus'];
  readonly host: string;
  readonly port: number;
  readonly exportName: string;
}

export interface VmLaunch {
  readonly vm: VmConfig;
  readonly disks: readonly NbdDisk[];
  readonly accel: Accel;
  /** "none" (default), "isolated" (user-mode NIC that reaches nothing outside), or a `-nic` spec. */
  readonly network: string;
  /** Folder for the QMP and VNC sockets, serial log and pid file. */
  readonly dir: string;
}

export const vmFiles = (
  dir: string,
): { qmp: string; ownQmp: string; vnc: string; qga: string; serial: string; qemuLog: string; pid: string; state: string } => ({
  /** The monitor for the user (QEMU takes one client per QMP socket). */
  qmp: join(dir, 'vm-qmp.sock'),
  /** Lifeboat's own monitor connection: supervision, fallback, migration. */
  ownQmp: join(dir, 'vm-qmp-lifeboat.sock'),
  /** The VM's screen (VNC/RFB), on a unix socket only: the server bridges it to the console, no TCP port is ever opened. */
  vnc: join(dir, 'vm-vnc.sock'),
  /** The guest agent's channel (virtio-serial port org.qemu.guest_agent.0): answers only when the guest runs qemu-ga. */
  qga: join(dir, 'vm-qga.sock'),
  serial: join(dir, 'vm-serial.log'),
  qemuLog: join(dir, 'vm-qemu.log'),
  pid: join(dir, 'vm.pid'),
  state: join(dir, 'vm.json'),
});

/** The block node QEMU knows a disk by: the name migration mirrors from. */
export const nodeName = (disk: number): string => `lfb-disk${disk}`;

const OVMF = ['/usr/share/ovmf/OVMF.fd', '/usr/share/qemu/OVMF.fd'];

/** qemu-system-x86_64 arguments that boot the stored VM configuration from the session's NBD exports. */
export function qemuArgs(l: VmLaunch): string[] {
  const f = vmFiles(l.dir);
  const args = [
    '-name',
    l.vm.name,
    '-machine',
    `${l.vm.machine},accel=${l.accel}`,
    '-m',
    String(l.vm.memoryMiB),
    '-smp',
    String(l.vm.vcpus),
    '-display',
    'none',
    '-vnc',
    `unix:${f.vnc}`,
    '-monitor',
    'none',
    '-serial',
    `file:${f.serial}`,
    '-qmp',
    `unix:${f.qmp},server=on,wait=off`,
    '-qmp',
    `unix:${f.ownQmp},server=on,wait=off`,
    '-pidfile',
    f.pid,
    // Every booted VM gets the guest agent's channel: a lab's heartbeat asks the agent when the guest runs one.
    '-chardev',
    `socket,id=lfb-qga,path=${f.qga},server=on,wait=off`,
    '-device',
    'virtio-serial-pci,id=lfb-vserial',
    '-device',
    'virtserialport,chardev=lfb-qga,name=org.qemu.guest_agent.0',
  ];
  if (l.vm.firmware === 'uefi') {
    const fw = OVMF.find((p) => existsSync(p));
    if (!fw) throw new LifeboatError('LFB_ERR_TOOL_MISSING', 'the VM boots with UEFI firmware: install OVMF (apt-get install ovmf)');
    args.push('-bios', fw);
  }
  args.push(...hotplugPortArgs(l.vm.machine ?? 'q35'));
  if (l.network === 'none') args.push('-nic', 'none');
  else if (l.network === 'isolated') args.push('-nic', 'user,restrict=on,model=virtio-net-pci');
  else args.push('-nic', l.network);
  let scsi = false;
  let ahci = false;
  l.disks.forEach((d, i) => {
    // reconnect-delay: if `lifeboat serve` restarts, the guest's I/O waits instead of failing.
    args.push(
      '-blockdev',
      JSON.stringify({
        driver: 'nbd',
        'node-name': nodeName(i),
        server: { type: 'inet', host: d.host, port: String(d.port) },
        export: d.exportName,
        'reconnect-delay': 60,
      }),
    );
    const boot = `bootindex=${i + 1}`;
    switch (d.bus) {
      case 'virtio':
        args.push('-device', `virtio-blk-pci,drive=${nodeName(i)},id=dev-${nodeName(i)},${boot}`);
        break;
      case 'scsi':
        if (!scsi) args.push('-device', 'virtio-scsi-pci,id=lfb-scsi');
        scsi = true;
        args.push('-device', `scsi-hd,bus=lfb-scsi.0,drive=${nodeName(i)},id=dev-${nodeName(i)},${boot}`);
        break;
      case 'sata':
      case 'ide':
        if (!ahci) args.push('-device', 'ahci,id=lfb-ahci');
        ahci = true;
        args.push('-device', `ide-hd,bus=lfb-ahci.${i},drive=${nodeName(i)},id=dev-${nodeName(i)},${boot}`);
        break;
      case 'nvme':
        args.push('-device', `nvme,serial=lifeboat${i},drive=${nodeName(i)},id=dev-${nodeName(i)},${boot}`);
        break;
    }
  });
  return args;
}
