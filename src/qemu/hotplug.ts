import { LifeboatError } from '../core/errors.js';
import { nodeName } from './command-line.js';
import type { QmpClient } from './qmp.js';

/**
 * Free PCIe root ports a q35 VM is started with: q35's root bus (pcie.0)
 * takes no hot-plugged devices, so a disk added to a running VM goes into
 * one of these. Four is what a recovered VM needs before it is migrated.
 */
export const HOTPLUG_PORTS = 4;
export const hotplugPort = (k: number): string => `lfb-hp${k}`;

/** `-device` specs of the free root ports, for machines that need them (q35). */
export function hotplugPortArgs(machine: string): string[] {
  if (!/q35/.test(machine)) return [];
  const args: string[] = [];
  for (let k = 0; k < HOTPLUG_PORTS; k++) args.push('-device', `pcie-root-port,id=${hotplugPort(k)},bus=pcie.0,chassis=${k + 1}`);
  return args;
}

/**
 * Attaches session disk `i` to a running VM: its NBD export as a block
 * node, then a virtio disk in the first free root port (or on the root bus
 * of a machine that hot-plugs there, e.g. i440fx). If no device can be
 * added, the block node is removed again: the VM is left as it was.
 */
export async function hotPlugNbdDisk(qmp: QmpClient, i: number, nbd: { host: string; port: number }, exportName: string): Promise<void> {
  await qmp.execute('blockdev-add', {
    driver: 'nbd',
    'node-name': nodeName(i),
    server: { type: 'inet', host: nbd.host, port: String(nbd.port) },
    export: exportName,
    'reconnect-delay': 60,
  });
  const device = { driver: 'virtio-blk-pci', drive: nodeName(i), id: `dev-${nodeName(i)}` };
  const problems: string[] = [];
  const tryAdd = async (bus: string | undefined): Promise<boolean> => {
    try {
      // Slot 0: QEMU would accept other slots of a taken port, but a guest scans only slot 0 behind a PCIe port.
      await qmp.execute('device_add', bus === undefined ? device : { ...device, bus, addr: '0' });
      return true;
    } catch (err) {
      problems.push(`${bus ?? 'root bus'}: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    }
  };
  for (let k = 0; k < HOTPLUG_PORTS; k++) if (await tryAdd(hotplugPort(k))) return;
  // No such port: a machine without them (i440fx hot-plugs on its root bus, QEMU picks the slot).
  // With the ports all taken, QEMU would pick one of them again: never the root bus of a q35.
  if (/not found/i.test(problems[0] ?? '') && (await tryAdd(undefined))) return;
  await qmp.execute('blockdev-del', { 'node-name': nodeName(i) }).catch(() => undefined);
  throw new LifeboatError('LFB_ERR_VM', `no free hot-plug slot in the VM for the new disk (${problems.join('; ')})`, { details: { problems } });
}
