/**
 * A sandbox: the SureBackup lab kept running for people. Its keeper (a
 * detached process `lifeboat sandbox start` leaves behind) owns the lab, so
 * removeLeftoverLabs leaves it alone while the keeper lives: it makes the
 * network, boots the group as instant sessions of the running server (each
 * with a NIC on a tap of the lab), waits for their heartbeats, starts the port
 * forwards, reports all of it in the sandbox's status file, and holds it until
 * asked to stop (SIGTERM from `sandbox stop`); then it removes everything:
 * forwards, sessions (with their overlays and QEMU), taps, dnsmasq, namespace.
 * A keeper killed with -9 leaves its lab record; the next SureBackup run or
 * sandbox start removes that lab (its relays end with the keeper's pipes).
 */
import { systemClock } from '../core/clock.js';
import { LifeboatError, isLifeboatError } from '../core/index.js';
import { startLabForward, type LabForward } from './forwarder.js';
import { newLabId, planLabHosts } from './lab-plan.js';
import { processStart, selfRef } from './lab-record.js';
import { bootLabVm } from './lab-vm.js';
import { removeLeftoverLabs } from './leftovers.js';
import { createLabNetwork } from './network.js';
import { heartbeat } from './probes.js';
import {
  removeSandboxFiles,
  sandboxFiles,
  sandboxSessionName,
  writeJsonFile,
  type SandboxForwardStatus,
  type SandboxSpec,
  type SandboxStatus,
  type SandboxVmStatus,
} from './sandbox-status.js';
import type { LabNetwork, LabSessions } from './types.js';

export interface KeepSandboxOptions {
  readonly spec: SandboxSpec;
  readonly sessions: LabSessions;
  /** The lab records' folder, shared with SureBackup runs (each removes what the other's killed runs left). */
  readonly stateDir: string;
  /** The sandboxes' folder (spec, status and log files). */
  readonly sandboxDir: string;
  /** Aborted: the sandbox is removed and keepSandbox resolves. */
  readonly signal: AbortSignal;
  readonly onProgress?: (line: string) => void;
}

const WATCH_MS = 5000;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Makes the sandbox, holds it until `signal` aborts, then removes it. Resolves
 * once everything is removed; a start that failed leaves its status (state
 * "failed", with the error) for `sandbox start` to report, and rejects.
 */
export async function keepSandbox(o: KeepSandboxOptions): Promise<void> {
  const progress = o.onProgress ?? ((): void => undefined);
  const { spec } = o;
  const files = sandboxFiles(o.sandboxDir, spec.name);
  const subnet = spec.subnet ?? '10.99.0.0/24';
  let status: SandboxStatus = {
    version: 1,
    name: spec.name,
    state: 'starting',
    owner: selfRef(),
    startedAt: systemClock.now().toISOString(),
    vms: [],
    forwards: [],
    log: files.log,
  };
  const publish = async (change: Partial<SandboxStatus>): Promise<void> => {
    status = { ...status, ...change };
    await writeJsonFile(files.status, status);
  };
  await publish({});
  let net: LabNetwork | undefined;
  const asked: string[] = [];
  const qemuPids: number[] = [];
  const forwards: LabForward[] = [];
  let failure: unknown;
  try {
    const left = await removeLeftoverLabs(o.stateDir, { stopSession: (n) => o.sessions.stop(n) });
    if (left.removed.length > 0) progress(`removed what an interrupted lab left: ${left.removed.join(', ')}`);
    for (const e of left.errors) progress(`could not remove all an interrupted lab left: ${e}`);
    const id = newLabId();
    const hosts = planLabHosts(
      id,
      subnet,
      spec.vms.map((v) => v.job),
    );
    progress(`lab ${id}: making the isolated network (${subnet})`);
    net = await createLabNetwork({ id, subnet, hosts, stateDir: o.stateDir });
    const vms: SandboxVmStatus[] = spec.vms.map((v, i) => ({
      job: v.job,
      point: v.point,
      name: hosts[i]!.name,
      ip: hosts[i]!.ip,
      session: sandboxSessionName(spec.name, i),
    }));
    await publish({ labId: id, netns: net.netns, vms });
    // Forwards first: a port in use fails the start before any VM boots (a relay connects only per connection).
    const forwardStatus: SandboxForwardStatus[] = [];
    for (const f of spec.forwards) {
      const target = vms[spec.vms.findIndex((v) => v.job === f.job)];
      if (target === undefined) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward to ${f.job}: not a --vm of the sandbox`);
      const fwd = await startLabForward({
        netns: net.netns,
        socketDir: o.stateDir,
        listenHost: f.host,
        listenPort: f.port,
        targetIp: target.ip,
        targetPort: f.toPort,
        allowNonLoopback: spec.forwardAny,
      });
      forwards.push(fwd);
      const listen = `${f.host.includes(':') ? `[${f.host}]` : f.host}:${fwd.listen.port}`;
      forwardStatus.push({ listen, host: f.host, port: fwd.listen.port, job: f.job, to: fwd.target });
      progress(`forward ${listen} -> ${f.job} ${fwd.target}`);
    }
    await publish({ forwards: forwardStatus });
    const beats: Promise<void>[] = [];
    for (const [i, v] of spec.vms.entries()) {
      throwIfAborted(o.signal);
      progress(`${v.job}: booting point ${v.point} as session ${vms[i]!.session} (${vms[i]!.ip})`);
      const s = await bootLabVm({
        net,
        sessions: o.sessions,
        stateDir: o.stateDir,
        index: i,
        host: hosts[i]!,
        job: v.job,
        point: v.point,
        name: vms[i]!.session,
        accel: spec.accel,
        onStarting: () => void asked.push(vms[i]!.session),
      });
      qemuPids.push(s.pid);
      vms[i] = { ...vms[i]!, point: s.pointId, pid: s.pid };
      await publish({ vms });
      // The heartbeats run while later VMs boot.
      const beat = heartbeat({
        qgaSocket: s.qgaSocket,
        serialLog: s.serialLog,
        ...(spec.serialPattern !== undefined ? { serialPattern: spec.serialPattern } : {}),
        timeoutMs: spec.bootTimeoutS * 1000,
        signal: o.signal,
      }).then((t) => {
        if (!t.ok) throw new LifeboatError('LFB_ERR_VM', `${v.job} (session ${s.name}) did not pass its heartbeat within ${spec.bootTimeoutS} s: ${t.detail}`);
        progress(`${v.job}: booted (${t.detail})`);
      });
      // Awaited after the loop; a boot failing before then must not leave it an unhandled rejection.
      beat.catch(() => undefined);
      beats.push(beat);
    }
    await Promise.all(beats);
    throwIfAborted(o.signal);
    await publish({ state: 'running', readyAt: systemClock.now().toISOString() });
    progress(`sandbox ${spec.name} running`);
    await holdUntilAborted(o.signal, vms, progress);
  } catch (err) {
    failure = err;
  }
  progress(`sandbox ${spec.name}: stopping ${asked.length} VM(s), ${forwards.length} forward(s) and removing the network`);
  await publish({ state: 'stopping' }).catch(() => undefined);
  const cleanupErrors = await teardown(o.sessions, net, asked, qemuPids, forwards);
  for (const e of cleanupErrors) progress(`removing the sandbox: ${e}`);
  if (failure !== undefined || cleanupErrors.length > 0) {
    const err = failure ?? new LifeboatError('LFB_ERR_LAB', cleanupErrors.join('; '));
    const code = isLifeboatError(err) ? err.code : 'LFB_ERR_INTERNAL';
    // Kept for `sandbox start` (or `sandbox list`) to say why; `sandbox stop` or the next start removes it.
    await publish({ state: 'failed', error: { code, message: message(err) } });
    throw err;
  }
  await removeSandboxFiles(o.sandboxDir, spec.name);
}

/**
 * Waits for the stop, watching the VMs meanwhile: the timer also keeps this
 * process alive when nothing else would (a sandbox without forwards has no
 * open handle of its own).
 */
async function holdUntilAborted(signal: AbortSignal, vms: readonly SandboxVmStatus[], progress: (line: string) => void): Promise<void> {
  const reported = new Set<string>();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      for (const v of vms)
        if (v.pid !== undefined && processStart(v.pid) === undefined && !reported.has(v.session)) {
          reported.add(v.session);
          progress(`${v.job}: its VM (session ${v.session}, QEMU pid ${v.pid}) ended; the sandbox keeps the rest until stopped`);
        }
    }, WATCH_MS);
    const done = (): void => {
      clearInterval(timer);
      resolve();
    };
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

/** Waits (up to 15 s) until the QEMU processes of stopped sessions are gone: a stop that returns has removed them. */
async function waitGone(pids: readonly number[]): Promise<void> {
  const deadline = performance.now() + 15_000;
  while (pids.some((p) => processStart(p) !== undefined) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new LifeboatError('LFB_ERR_INTERRUPTED', `stopped (${String(signal.reason)}) while starting`);
}

/** Forwards, then sessions, then the network; every step is tried, their errors returned. */
async function teardown(
  sessions: LabSessions,
  net: LabNetwork | undefined,
  asked: readonly string[],
  qemuPids: readonly number[],
  forwards: readonly LabForward[],
): Promise<string[]> {
  const errors: string[] = [];
  await Promise.all(forwards.map((f) => f.close().catch((err: unknown) => void errors.push(`closing the forward to ${f.target}: ${message(err)}`))));
  await Promise.all(asked.map((n) => sessions.stop(n).catch((err: unknown) => void errors.push(`stopping session ${n}: ${message(err)}`))));
  await waitGone(qemuPids);
  await net?.destroy().catch((err: unknown) => void errors.push(`removing the lab network: ${message(err)}`));
  return errors;
}
