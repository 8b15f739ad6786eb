import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { LifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { qemuArgs, vmFiles, type Accel, type VmLaunch } from './command-line.js';
import { QmpClient } from './qmp.js';

/** What is recorded in the session folder (vm.json), so a restarted server finds its VM again. */
export interface VmRecord {
  readonly pid: number;
  readonly accel: Accel;
  /** Why the VM runs under another accelerator than asked (KVM failed). */
  readonly accelNote?: string;
  readonly network: string;
  readonly startedAt: string;
  /** The VNC unix socket of the VM's screen; absent for a VM an older server booted without one. */
  readonly vncSocket?: string;
}

export interface VmStatus extends VmRecord {
  readonly state: 'running' | 'exited';
  /** How it ended, when it did on its own. */
  readonly exit?: string;
  readonly serialLog: string;
  readonly qmpSocket: string;
  /** The guest agent's socket (answers when the guest runs qemu-ga). */
  readonly qgaSocket: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A reused pid is not our VM: the command line must be QEMU's.
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system');
  } catch {
    return false;
  }
}

/** True when KVM exists and this user may open it. */
export function kvmUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return true;
  } catch {
    return false;
  }
}

/**
 * One supervised QEMU process booting a recovered VM. QEMU runs in its own
 * process group, so it outlives a crash of `lifeboat serve` (its NBD disks
 * reconnect when the server is back); the server watches it, and a restarted
 * server attaches to it again from vm.json. Under `--accel kvm`, a guest that
 * KVM cannot run (an emulation failure, or KVM failing to start) is started
 * again under TCG, and the session says why.
 */
export class QemuVm {
  private exit: string | undefined;
  private watcher: NodeJS.Timeout | undefined;
  private monitor: QmpClient | undefined;

  private constructor(
    private readonly launchInfo: VmLaunch | undefined,
    private rec: VmRecord,
    private readonly dir: string,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    this.watch();
  }

  static async launch(l: VmLaunch, logger: Logger, clock: Clock): Promise<QemuVm> {
    let first: VmRecord;
    try {
      first = await start(l, clock);
    } catch (err) {
      // KVM missing, not permitted, or refusing this machine: TCG, and say why.
      if (l.accel !== 'kvm' || !(err instanceof LifeboatError) || err.code !== 'LFB_ERR_VM') throw err;
      logger.warn('instant recovery: QEMU did not start under KVM; starting under TCG', { problem: err.message });
      first = { ...(await start({ ...l, accel: 'tcg' }, clock)), accelNote: `asked for kvm: ${err.message}` };
    }
    const vm = new QemuVm(l, first, l.dir, logger, clock);
    await vm.save();
    if (first.accel === 'kvm') void vm.fallBackIfKvmFails();
    return vm;
  }

  /** The VM of a session after a server restart, if it is still running. */
  static async attach(dir: string, logger: Logger, clock: Clock): Promise<QemuVm | undefined> {
    let rec: VmRecord;
    try {
      rec = JSON.parse(await readFile(vmFiles(dir).state, 'utf8')) as VmRecord;
    } catch {
      return undefined;
    }
    const vm = new QemuVm(undefined, rec, dir, logger, clock);
    if (!alive(rec.pid)) vm.exit = 'ended while the server was down';
    return vm;
  }

  private async save(): Promise<void> {
    await writeFile(vmFiles(this.dir).state, JSON.stringify(this.rec));
  }

  private watch(): void {
    this.watcher = setInterval(() => {
      if (this.exit === undefined && !alive(this.rec.pid)) {
        this.exit = 'QEMU exited';
        this.logger.warn('instant recovery: the recovered VM stopped', { dir: this.dir, pid: this.rec.pid });
        this.monitor?.close();
        this.monitor = undefined;
      }
    }, 1000);
    this.watcher.unref();
  }

  get running(): boolean {
    return this.exit === undefined && alive(this.rec.pid);
  }

  status(): VmStatus {
    const f = vmFiles(this.dir);
    const running = this.running;
    return {
      ...this.rec,
      state: running ? 'running' : 'exited',
      ...(running ? {} : { exit: this.exit ?? 'QEMU exited' }),
      serialLog: f.serial,
      qmpSocket: f.qmp,
      qgaSocket: f.qga,
    };
  }

  /** The VM's QMP monitor (one connection, kept). */
  async qmp(): Promise<QmpClient> {
    if (!this.running)
      throw new LifeboatError('LFB_ERR_VM', `the recovered VM is not running (${this.exit ?? 'QEMU exited'}); see ${vmFiles(this.dir).qemuLog}`);
    if (!this.monitor) {
      const m = await QmpClient.connect(vmFiles(this.dir).ownQmp);
      this.monitor = m;
      m.onEvent(() => undefined);
    }
    return this.monitor;
  }

  /**
   * Watches the first minute of a KVM boot. An emulation failure stops the
   * guest in the "internal-error" run state; QEMU then still runs, so the VM
   * is started again under TCG. What happened is kept in vm.json and the log.
   */
  private async fallBackIfKvmFails(): Promise<void> {
    const l = this.launchInfo!;
    const until = performance.now() + 60_000;
    let why: string | undefined;
    while (performance.now() < until && this.exit === undefined && why === undefined) {
      await sleep(500);
      try {
        const s = await (await this.qmp()).execute<{ status: string }>('query-status');
        if (s.status === 'internal-error') why = 'KVM stopped the guest with an internal (emulation) error';
      } catch {
        if (!alive(this.rec.pid)) why = 'QEMU exited under KVM';
      }
    }
    if (why === undefined) return;
    this.logger.warn(`instant recovery: ${why}; starting the VM again under TCG`, { dir: this.dir });
    await appendFile(vmFiles(this.dir).qemuLog, `lifeboat: ${why}; starting again under TCG\n`).catch(() => undefined);
    await this.kill();
    try {
      this.rec = { ...(await start({ ...l, accel: 'tcg' }, this.clock)), accelNote: `asked for kvm: ${why}` };
      this.exit = undefined;
      await this.save();
    } catch (err) {
      this.exit = `KVM failed and TCG could not start: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  private async kill(): Promise<void> {
    this.monitor?.close();
    this.monitor = undefined;
    try {
      process.kill(this.rec.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    for (let i = 0; i < 100 && alive(this.rec.pid); i++) await sleep(50);
  }

  /** Powers the VM off (QMP quit; SIGKILL if QEMU does not go within 10 s) and stops watching it. */
  async powerOff(): Promise<void> {
    if (this.running) {
      try {
        await (await this.qmp()).execute('quit');
      } catch {
        // the monitor may close before it answers
      }
      for (let i = 0; i < 200 && alive(this.rec.pid); i++) await sleep(50);
      if (alive(this.rec.pid)) await this.kill();
    }
    this.exit ??= 'powered off';
    this.close();
  }

  /** Stops watching (server shutdown): the VM itself keeps running. */
  close(): void {
    if (this.watcher) clearInterval(this.watcher);
    this.monitor?.close();
    this.monitor = undefined;
  }
}

/** Starts QEMU and waits until its monitor answers. */
async function start(l: VmLaunch, clock: Clock): Promise<VmRecord> {
  const f = vmFiles(l.dir);
  await rm(f.qmp, { force: true });
  await rm(f.ownQmp, { force: true });
  await rm(f.vnc, { force: true });
  await rm(f.pid, { force: true });
  const args = qemuArgs(l);
  const log = openSync(f.qemuLog, 'a');
  let spawnError: NodeJS.ErrnoException | undefined;
  let exited: number | null | undefined;
  try {
    const child = spawn('qemu-system-x86_64', args, { detached: true, stdio: ['ignore', log, log] });
    child.on('error', (e: NodeJS.ErrnoException) => (spawnError = e));
    child.on('exit', (code) => (exited = code));
    child.unref();
    for (let i = 0; i < 200; i++) {
      await sleep(50);
      if (spawnError?.code === 'ENOENT')
        throw new LifeboatError('LFB_ERR_TOOL_MISSING', 'booting a recovered VM needs qemu-system-x86_64: install qemu-system-x86');
      if (spawnError) throw new LifeboatError('LFB_ERR_VM', `cannot start QEMU: ${spawnError.message}`);
      if (exited !== undefined) {
        const tail = existsSync(f.qemuLog) ? readFileSync(f.qemuLog, 'utf8').trim().split('\n').slice(-5).join(' | ') : '';
        throw new LifeboatError('LFB_ERR_VM', `QEMU exited at start (code ${String(exited)}): ${tail}`);
      }
      if (existsSync(f.ownQmp) && child.pid !== undefined) {
        try {
          (await QmpClient.connect(f.ownQmp, 2000)).close();
        } catch {
          continue;
        }
        return { pid: child.pid, accel: l.accel, network: l.network, startedAt: clock.now().toISOString(), vncSocket: f.vnc };
      }
    }
    child.kill('SIGKILL');
    throw new LifeboatError('LFB_ERR_VM', `QEMU did not open its monitor within 10 s; see ${f.qemuLog}`);
  } finally {
    closeSync(log);
  }
}
