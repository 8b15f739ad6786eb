import { recordLabSession } from './network.js';
import type { LabHost, LabNetwork, LabSession, LabSessions } from './types.js';

/**
 * Boots one VM of a lab: a tap in the host's namespace, the session's name
 * recorded (before the start, so a run killed during it still names the
 * session for the next one), an instant session booted with a NIC on that
 * tap, then the tap moved onto the lab's bridge.
 */
export async function bootLabVm(o: {
  readonly net: LabNetwork;
  readonly sessions: LabSessions;
  readonly stateDir: string;
  readonly index: number;
  readonly host: LabHost;
  readonly job: string;
  readonly point: string;
  readonly name: string;
  readonly accel?: 'kvm' | 'tcg' | undefined;
  /** Called just before the start is asked for (the caller then stops the session in every outcome). */
  readonly onStarting?: () => void;
}): Promise<LabSession> {
  const tap = await o.net.createTap(o.index);
  await recordLabSession(o.stateDir, o.net.id, o.name);
  o.onStarting?.();
  const session = await o.sessions.start({
    job: o.job,
    point: o.point,
    name: o.name,
    ...(o.accel !== undefined ? { accel: o.accel } : {}),
    network: `tap,ifname=${tap},script=no,downscript=no,model=virtio-net-pci,mac=${o.host.mac}`,
  });
  await o.net.attachTap(tap);
  return session;
}
