import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { newLabId, planLabHosts } from './lab-plan.js';
import { removeLeftoverLabs } from './leftovers.js';
import { bootLabVm } from './lab-vm.js';
import { createLabNetwork } from './network.js';
import { heartbeat, httpProbe, pingProbe, scriptProbe, tcpProbe } from './probes.js';
import { screenshot } from './screenshot.js';
import type { LabHost, LabNetwork, LabSession, LabSessions, LabTestResult, LabVmReport, LabVmSpec, SureBackupReport } from './types.js';

export interface SureBackupOptions {
  readonly sessions: LabSessions;
  /** The application group, in boot order. */
  readonly vms: readonly LabVmSpec[];
  /** Where lab records live (what the next run removes after a kill). */
  readonly stateDir: string;
  /** Screenshots and report.json. */
  readonly reportDir: string;
  readonly accel?: 'kvm' | 'tcg';
  /** The lab's /24 (default 10.99.0.0/24): the lab is a namespace of its own, so it may overlap any real network. */
  readonly subnet?: string;
  /** Checks a point's blocks (the app's verify); runs while the VM boots. */
  readonly verify?: (job: string, pointId: string) => Promise<LabTestResult>;
  readonly onProgress?: (line: string) => void;
  /** Aborted (SIGINT, SIGTERM): the run stops waiting, removes everything it made and throws LFB_ERR_INTERRUPTED. */
  readonly signal?: AbortSignal;
  /** Fixed lab id (the CLI names the report folder after it); default random. */
  readonly labId?: string;
  /** The report's id (default: reportIdOf(start, lab id)). */
  readonly reportId?: string;
  /** The report's startedAt and endedAt. */
  readonly clock?: Clock;
}

/** The report of one VM, with why it started without the VM it waits for. */
export interface SureBackupVmReport extends LabVmReport {
  readonly note?: string;
}

export interface SureBackupResult extends SureBackupReport {
  readonly vms: readonly SureBackupVmReport[];
  readonly reportDir: string;
}

/** Deadlines of the tests after the heartbeat: a guest's network comes up a little after it. */
const PING_MS = 60_000;
const PORT_MS = 30_000;
const SCRIPT_MS = 120_000;
const SCREENSHOT_MS = 15_000;

interface VmRun {
  readonly spec: LabVmSpec;
  readonly host: LabHost;
  readonly name: string;
  /** Its start was asked for: stopped at the end even if the answer never came. */
  asked: boolean;
  session?: LabSession;
  startedAt?: number;
  booted: boolean;
  seconds: number;
  note?: string;
  readonly tests: LabTestResult[];
  screenshot?: string;
  /** Settles when the heartbeat is decided (waitForIt holds later VMs on it). */
  heartbeat?: Promise<boolean>;
  /** Settles when every test of the VM (but the screenshot) is done. */
  done?: Promise<void>;
}

const failed = (name: string, detail: string, ms = 0): LabTestResult => ({ name, ok: false, detail, ms });
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * A SureBackup run: boots each VM of the group from the backup (instant
 * sessions with a NIC on a tap of an isolated lab), tests it, screenshots it,
 * and removes everything it made in every outcome: sessions, taps, dnsmasq,
 * namespace. A run killed with -9 leaves its lab record; the next run removes
 * what it names first.
 */
export async function runSureBackup(o: SureBackupOptions): Promise<SureBackupResult> {
  const progress = o.onProgress ?? ((): void => undefined);
  const clock = o.clock ?? systemClock;
  const startedAt = clock.now();
  await cleanLeftovers(o.sessions, o.stateDir, progress);
  if (o.vms.length === 0) throw new LifeboatError('LFB_ERR_USAGE', 'a SureBackup run needs at least one VM');
  const id = o.labId ?? newLabId();
  const hosts = planLabHosts(
    id,
    o.subnet ?? '10.99.0.0/24',
    o.vms.map((v) => v.job),
  );
  const runs: VmRun[] = o.vms.map((spec, i) => ({ spec, host: hosts[i]!, name: `sb-${id}-${i}`, asked: false, booted: false, seconds: 0, tests: [] }));
  await mkdir(o.reportDir, { recursive: true });
  progress(`lab ${id}: making the isolated network (${o.subnet ?? '10.99.0.0/24'})`);
  const net = await createLabNetwork({ id, subnet: o.subnet ?? '10.99.0.0/24', hosts, stateDir: o.stateDir });
  const aborted = abortPromise(o.signal);
  const starting = startAll(o, net, runs, progress);
  try {
    await Promise.race([starting, aborted.promise]);
    await Promise.race([Promise.all(runs.map((r) => r.done)), aborted.promise]);
    for (const r of runs) {
      if (!r.session) continue;
      const png = join(o.reportDir, `${r.host.name}.png`);
      // A signal must not wait out a monitor that does not answer (up to SCREENSHOT_MS per VM).
      const shot = await Promise.race([
        screenshot(r.session.qmpSocket, png, SCREENSHOT_MS).catch((err: unknown) => failed('screenshot', message(err))),
        aborted.promise,
      ]);
      r.tests.push(shot);
      if (shot.ok) r.screenshot = png;
    }
  } finally {
    aborted.dispose();
    // A start under way ends before the teardown, so no session is started after it.
    await starting.catch(() => undefined);
    progress(`lab ${id}: stopping ${runs.filter((r) => r.asked).length} VM(s) and removing the network`);
    await teardown(o.sessions, net, runs);
  }
  const vms: SureBackupVmReport[] = runs.map((r) => ({
    job: r.spec.job,
    point: r.session?.pointId ?? r.spec.point,
    name: r.host.name,
    ip: r.host.ip,
    booted: r.booted,
    seconds: r.seconds,
    tests: r.tests,
    ...(r.screenshot !== undefined ? { screenshot: r.screenshot } : {}),
    ...(r.note !== undefined ? { note: r.note } : {}),
  }));
  const report: SureBackupResult = {
    id: o.reportId ?? reportIdOf(startedAt, id),
    startedAt: startedAt.toISOString(),
    endedAt: clock.now().toISOString(),
    vms,
    ok: vms.every((v) => v.booted && v.tests.every((t) => t.ok)),
    reportDir: o.reportDir,
  };
  const file = join(o.reportDir, 'report.json');
  await writeFile(`${file}.tmp`, JSON.stringify(report, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
  return report;
}

/**
 * A report's id: the UTC time the run started and its lab's id
 * (`20261202-131503-a3f09c`). The lab id alone (6 hex digits, short for
 * interface names) would repeat once in a few thousand runs and a report
 * folder named by it would then be written over; the time also sorts the
 * report folders by date.
 */
export function reportIdOf(startedAt: Date, labId: string): string {
  const t = startedAt.toISOString();
  return `${t.slice(0, 10).replace(/-/g, '')}-${t.slice(11, 19).replace(/:/g, '')}-${labId}`;
}

/** What killed runs left: their labs (with their sessions, through the server) and `sb-` sessions no live lab owns. */
async function cleanLeftovers(sessions: LabSessions, stateDir: string, progress: (line: string) => void): Promise<void> {
  const { removed, errors } = await removeLeftoverLabs(stateDir, { stopSession: (name) => sessions.stop(name) });
  if (removed.length > 0) progress(`removed what an interrupted lab left: ${removed.join(', ')}`);
  // Not fatal: a lab that could not be removed keeps its record for the next run, and this lab has its own names.
  for (const e of errors) progress(`could not remove all an interrupted lab left: ${e}`);
  // A session started after its lab's record was removed by hand, or by a run killed between its
  // start and its record: its lab is gone, so no one else will stop it.
  for (const name of await sessions.list()) {
    const m = /^sb-([0-9a-f]{1,6})-\d+$/.exec(name);
    if (m && !existsSync(join(stateDir, `lab-${m[1]}.json`))) {
      progress(`stopping session ${name}, left by an interrupted lab`);
      await sessions.stop(name);
    }
  }
}

/** Starts the VMs in order: a VM that later ones wait for holds them until its heartbeat is decided. */
async function startAll(o: SureBackupOptions, net: LabNetwork, runs: VmRun[], progress: (line: string) => void): Promise<void> {
  let waitingFor: VmRun | undefined;
  for (const [i, r] of runs.entries()) {
    if (o.signal?.aborted === true) return;
    if (waitingFor?.heartbeat && !(await waitingFor.heartbeat))
      r.note = `started although ${waitingFor.spec.job}, which it waits for, did not pass its heartbeat`;
    try {
      progress(`${r.spec.job}: booting point ${r.spec.point} as ${r.name} (${r.host.ip})`);
      r.session = await bootLabVm({
        net,
        sessions: o.sessions,
        stateDir: o.stateDir,
        index: i,
        host: r.host,
        job: r.spec.job,
        point: r.spec.point,
        name: r.name,
        accel: o.accel,
        onStarting: () => {
          r.startedAt = performance.now();
          r.asked = true;
        },
      });
    } catch (err) {
      r.tests.push(failed('boot', `the VM could not be started: ${message(err)}`));
      r.heartbeat = Promise.resolve(false);
      r.done = Promise.resolve();
      continue;
    }
    testVm(o, net, r, progress);
    if (r.spec.waitForIt) waitingFor = r;
  }
}

/** Starts the VM's tests: verify at once (while it boots), then heartbeat, ping, ports, URLs, scripts. Sets r.heartbeat and r.done. */
function testVm(o: SureBackupOptions, net: LabNetwork, r: VmRun, progress: (line: string) => void): void {
  const s = r.session!;
  const verifying = o.verify
    ? o.verify(r.spec.job, s.pointId).catch((err: unknown) => failed('verify', `the check could not run: ${message(err)}`))
    : undefined;
  const hb = heartbeat({
    qgaSocket: s.qgaSocket,
    serialLog: s.serialLog,
    ...(r.spec.serialPattern !== undefined ? { serialPattern: r.spec.serialPattern } : {}),
    timeoutMs: r.spec.bootTimeoutS * 1000,
    ...(o.signal ? { signal: o.signal } : {}),
  }).catch((err: unknown) => failed('heartbeat', message(err)));
  r.heartbeat = hb.then((t) => {
    r.tests.push(t);
    r.booted = t.ok;
    r.seconds = Math.round((performance.now() - r.startedAt!) / 100) / 10;
    progress(`${r.spec.job}: ${t.ok ? `booted in ${r.seconds} s` : `no heartbeat: ${t.detail}`}`);
    return t.ok;
  });
  r.done = (async () => {
    const booted = await r.heartbeat!;
    const ip = r.host.ip;
    const planned: { name: string; run: () => Promise<LabTestResult> }[] = [
      { name: 'ping', run: () => pingProbe(net.exec.bind(net), ip, PING_MS) },
      ...r.spec.ports.map((p) => ({ name: `tcp:${p}`, run: () => tcpProbe(net.exec.bind(net), ip, p, PORT_MS) })),
      ...r.spec.urls.map((u) => {
        const url = u.replaceAll('{ip}', ip);
        return { name: `http:${url}`, run: () => httpProbe(net.exec.bind(net), url, PORT_MS) };
      }),
      ...r.spec.scripts.map((f) => ({
        name: `script:${f}`,
        run: () => scriptProbe(net.exec.bind(net), f, { VM_NAME: r.host.name, VM_IP: ip, POINT_ID: s.pointId }, SCRIPT_MS),
      })),
    ];
    for (const p of planned) {
      if (!booted || o.signal?.aborted === true) {
        r.tests.push(failed(p.name, 'not run: the VM did not pass its heartbeat'));
        continue;
      }
      const t = await p.run().catch((err: unknown) => failed(p.name, message(err)));
      r.tests.push(t);
      progress(`${r.spec.job}: ${t.name} ${t.ok ? 'ok' : `FAILED: ${t.detail}`}`);
    }
    if (verifying) {
      const v = await verifying;
      r.tests.push(v);
      progress(`${r.spec.job}: verify ${v.ok ? 'ok' : `FAILED: ${v.detail}`}`);
    }
  })();
}

/** Stops every session the run started and removes the network; errors are collected, the first one thrown after all were tried. */
async function teardown(sessions: LabSessions, net: LabNetwork, runs: readonly VmRun[]): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all(runs.filter((r) => r.asked).map((r) => sessions.stop(r.name).catch((err: unknown) => void errors.push(err))));
  await net.destroy().catch((err: unknown) => void errors.push(err));
  if (errors.length > 0) throw errors[0];
}

/** A promise that rejects with LFB_ERR_INTERRUPTED when the signal is aborted. */
function abortPromise(signal: AbortSignal | undefined): { promise: Promise<never>; dispose(): void } {
  if (!signal) return { promise: new Promise<never>(() => undefined), dispose: () => undefined };
  let onAbort = (): void => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = (): void =>
      reject(
        new LifeboatError('LFB_ERR_INTERRUPTED', `interrupted by ${String(signal.reason)}; the lab was removed`, {
          details: { signal: String(signal.reason) },
        }),
      );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}
