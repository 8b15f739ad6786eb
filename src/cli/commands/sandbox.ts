import { folderRepositoryRoot } from '../../repository/location.js';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callControl } from '../../app/control-api.js';
import { controlApiLabSessions, labStateDir } from '../../app/lab-sessions.js';
import { systemClock } from '../../core/clock.js';
import { ERROR_CODES, LifeboatError, isLifeboatError, type ErrorCode } from '../../core/errors.js';
import { checkForwardHost, parseForward, removeStaleForwardSockets } from '../../lab/forwarder.js';
import { isAlive } from '../../lab/lab-record.js';
import { removeLeftoverLabs } from '../../lab/leftovers.js';
import {
  keeperAlive,
  listSandboxes,
  qemuRuns,
  readSandboxSpec,
  readSandboxStatus,
  removeSandboxFiles,
  sandboxFiles,
  validateSandboxName,
  type SandboxSpec,
  type SandboxStatus,
} from '../../lab/sandbox-status.js';
import type { LabSessions } from '../../lab/types.js';
import type { Command, CommandContext } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';
import { DEFAULT_BOOT_TIMEOUT_S, labBootFlags } from '../lab-flags.js';

/** The sandboxes' spec, status and log files; their labs' records are with SureBackup's (labStateDir). */
export const sandboxesDir = (repo: string): string => join(repo, 'surebackup', 'sandboxes');
const KEEPER = fileURLToPath(new URL('../sandbox-keeper.js', import.meta.url));
/** Beyond the boot timeout: making the lab, the sessions' start, the forwards. */
const START_SLACK_S = 120;
const STOP_WAIT_MS = 180_000;
/** A spec without a status this old is a start whose keeper never ran. */
const ORPHAN_SPEC_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const list = (ctx: CommandContext, name: string): string[] => (ctx.values[name] as string[] | undefined) ?? [];

export const sandboxStart: Command = {
  name: 'sandbox start',
  usage:
    'sandbox start <name> --repo <dir> --vm <job>[@<point>] [--vm …] [--forward [<host>:]<port>=<job>:<port>]… [--forward-any] [--serial-pattern REGEX] [--timeout <s>] [--accel kvm|tcg] [--json]',
  summary: "boot restore points from the backup into an isolated lab kept running (a sandbox), with port forwards from the host's loopback",
  positionals: ['name'],
  options: {
    repo: REPO_OPTION,
    vm: { type: 'string', multiple: true, description: 'a VM of the sandbox, in boot order: <job> (latest point) or <job>@<point id>' },
    forward: {
      type: 'string',
      multiple: true,
      description: "[<host>:]<port>=<job>:<port>: a TCP port on the host relayed to the VM's port in the lab (port 0: any free one)",
      defaultText: 'none; host 127.0.0.1',
    },
    'forward-any': { type: 'boolean', description: "let --forward listen on an address beyond the host's loopback", defaultText: 'loopback only' },
    'serial-pattern': {
      type: 'string',
      description: 'regex on the serial console meaning "booted", for guests without the QEMU guest agent',
      defaultText: 'the guest agent only',
    },
    timeout: { type: 'string', description: 'seconds each VM has to pass its heartbeat', defaultText: String(DEFAULT_BOOT_TIMEOUT_S) },
    accel: { type: 'string', description: 'kvm or tcg', defaultText: 'kvm when usable, else tcg' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'sandboxes');
    const spec = parseSpec(ctx);
    // The VMs are the server's sessions: it must be up before anything is made.
    await callControl(repo, 'GET', '/sessions');
    const dir = sandboxesDir(repo);
    await mkdir(dir, { recursive: true });
    await removeDeadSandboxes(repo, controlApiLabSessions(repo), (l) => ctx.progress(l));
    const files = sandboxFiles(dir, spec.name);
    const taken = await readSandboxStatus(dir, spec.name);
    if (taken !== undefined) throw exists(spec.name, taken);
    try {
      const fh = await open(files.spec, 'wx', 0o600);
      await fh.writeFile(JSON.stringify(spec, null, 2) + '\n');
      await fh.close();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw exists(spec.name, undefined);
      throw err;
    }
    const status = await startKeeper(repo, spec, ctx.signal, (l) => ctx.progress(l));
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ ...status, alive: true }));
    for (const line of describe({ ...status, alive: true })) ctx.out(line);
    ctx.out(`stop it with: lifeboat sandbox stop ${spec.name} --repo ${repo}`);
  },
};

export const sandboxList: Command = {
  name: 'sandbox list',
  usage: 'sandbox list --repo <dir> [--json]',
  summary: 'the sandboxes of a repository: their VMs, addresses, sessions and forwards',
  positionals: [],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const all = await listSandboxes(sandboxesDir(folderRepositoryRoot(requireString(ctx, 'repo'), 'sandboxes')));
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(all));
    if (all.length === 0) return ctx.out('no sandboxes');
    for (const s of all) for (const line of describe(s)) ctx.out(line);
  },
};

export const sandboxStop: Command = {
  name: 'sandbox stop',
  usage: 'sandbox stop <name> --repo <dir> [--json]',
  summary: 'remove a sandbox: its forwards, sessions (overlays and QEMU), taps, dnsmasq and network namespace',
  positionals: ['name'],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'sandboxes');
    const name = ctx.args[0]!;
    validateSandboxName(name);
    const dir = sandboxesDir(repo);
    const status = await readSandboxStatus(dir, name);
    if (status === undefined && (await readSandboxSpec(dir, name)) === undefined)
      throw new LifeboatError('LFB_ERR_SANDBOX_NOT_FOUND', `no sandbox ${name} in ${repo}; see lifeboat sandbox list --repo ${repo}`, { details: { name } });
    if (status !== undefined && keeperAlive(status)) {
      ctx.progress(`sandbox ${name}: asking its keeper (pid ${status.owner.pid}) to remove it`);
      await stopKeeper(status);
    }
    // A keeper killed with -9 left its lab: removed here as after any killed lab.
    const sessions = controlApiLabSessions(repo);
    const left = await removeLeftoverLabs(labStateDir(repo), { stopSession: (n) => sessions.stop(n) });
    const errors = [...left.errors];
    // A keeper that could not stop a session (the server down) removed its lab's record with its network: the status still names them.
    for (const v of status?.vms ?? []) {
      try {
        await sessions.stop(v.session);
      } catch (err) {
        // No server and no QEMU of that session left: nothing of it runs.
        if (isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING') && !qemuRuns(v.pid)) continue;
        errors.push(`stopping session ${v.session}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (errors.length > 0)
      // The files stay, so that `sandbox stop` can be run again once the cause is fixed.
      throw new LifeboatError('LFB_ERR_LAB', `sandbox ${name}: not everything could be removed: ${errors.join('; ')}`, { details: { errors } });
    if (status !== undefined) await waitQemuGone(status);
    await removeStaleForwardSockets(labStateDir(repo));
    await removeSandboxFiles(dir, name);
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ name, stopped: true, removedLabs: left.removed }));
    ctx.out(`sandbox ${name} stopped and removed`);
  },
};

function parseSpec(ctx: CommandContext): SandboxSpec {
  const name = ctx.args[0]!;
  validateSandboxName(name);
  const vms = list(ctx, 'vm').map((t) => {
    const at = t.indexOf('@');
    const job = at < 0 ? t : t.slice(0, at);
    const point = at < 0 ? 'latest' : t.slice(at + 1);
    if (job === '' || point === '') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--vm "${t}": give <job> or <job>@<point>`);
    return { job, point };
  });
  if (vms.length === 0) throw new LifeboatError('LFB_ERR_USAGE', '--vm <job>[@<point>] is required (once per VM of the sandbox)');
  const forwardAny = ctx.values['forward-any'] === true;
  const forwards = list(ctx, 'forward').map((t) => {
    const f = parseForward(t);
    if (!vms.some((v) => v.job === f.job)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward ${t}: ${f.job} is not a --vm of the sandbox`);
    checkForwardHost(f.host, forwardAny);
    return f;
  });
  const { bootTimeoutS, serialPattern, accel } = labBootFlags(ctx);
  return {
    version: 1,
    name,
    vms,
    forwards,
    forwardAny,
    bootTimeoutS,
    ...(serialPattern !== undefined ? { serialPattern } : {}),
    ...(accel !== undefined ? { accel } : {}),
  };
}

const exists = (name: string, s: SandboxStatus | undefined): LifeboatError =>
  new LifeboatError(
    'LFB_ERR_SANDBOX_EXISTS',
    `sandbox ${name} is ${s?.state ?? 'starting'}${s ? ` (keeper pid ${s.owner.pid})` : ''}: choose another name, or lifeboat sandbox stop ${name} first`,
    { details: { name } },
  );

/** Sandboxes whose keeper died (killed with -9, or a failed start): their labs and sessions, then their files. */
async function removeDeadSandboxes(repo: string, sessions: LabSessions, progress: (line: string) => void): Promise<void> {
  const dir = sandboxesDir(repo);
  const dead = (await listSandboxes(dir)).filter((s) => !s.alive);
  const left = await removeLeftoverLabs(labStateDir(repo), { stopSession: (n) => sessions.stop(n) });
  if (left.removed.length > 0) progress(`removed what an interrupted lab left: ${left.removed.join(', ')}`);
  for (const e of left.errors) progress(`could not remove all an interrupted lab left: ${e}`);
  for (const s of dead) {
    progress(`removing sandbox ${s.name}, whose keeper (pid ${s.owner.pid}) ended`);
    await waitQemuGone(s);
    await removeSandboxFiles(dir, s.name);
  }
  await removeStaleForwardSockets(labStateDir(repo));
  // A spec whose keeper never wrote a status (it could not start at all).
  for (const n of await readdir(dir)) {
    const m = /^(.+)\.spec\.json$/.exec(n);
    if (!m || (await readSandboxStatus(dir, m[1]!)) !== undefined) continue;
    const age = systemClock.now().getTime() - (await stat(join(dir, n))).mtimeMs;
    if (age > ORPHAN_SPEC_MS) await rm(join(dir, n), { force: true });
  }
}

/** Starts the keeper detached (its output to the sandbox's log) and waits until the sandbox runs or its start failed. */
async function startKeeper(repo: string, spec: SandboxSpec, signal: AbortSignal, progress: (line: string) => void): Promise<SandboxStatus> {
  const dir = sandboxesDir(repo);
  const files = sandboxFiles(dir, spec.name);
  const logFd = openSync(files.log, 'a', 0o600);
  const child = spawn(process.execPath, [KEEPER, repo, spec.name], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exit: string | undefined;
  child.on('exit', (code, signal) => (exit = signal ?? `exit status ${code}`));
  child.on('error', (err) => (exit = err.message));
  const logTail = async (): Promise<string> => (await readFile(files.log, 'utf8').catch(() => '')).trim().split('\n').slice(-8).join('\n');
  const deadline = performance.now() + (spec.bootTimeoutS + START_SLACK_S) * 1000;
  let shown = 0;
  try {
    for (;;) {
      // Whether the keeper had ended is taken before its status is read: it writes its last status (a failure
      // and why) and then exits, so a status read after its end is its last word.
      const ended = exit !== undefined;
      const s = await readSandboxStatus(dir, spec.name).catch(() => undefined);
      if (s !== undefined && s.owner.pid === child.pid) {
        if (s.vms.length > shown) progress(`sandbox ${spec.name}: ${s.vms.map((v) => `${v.job} ${v.ip}`).join(', ')} (${s.state})`);
        shown = s.vms.length;
        if (s.state === 'running') return s;
        if (s.state === 'failed') {
          // The keeper removed what it made before writing this; it ends right after.
          await waitExit(() => exit !== undefined, 30_000);
          await removeSandboxFiles(dir, spec.name);
          const code: ErrorCode = s.error !== undefined && s.error.code in ERROR_CODES ? (s.error.code as ErrorCode) : 'LFB_ERR_INTERNAL';
          throw new LifeboatError(code, `sandbox ${spec.name} did not start: ${s.error?.message ?? 'no reason given'} (log: ${files.log})`, {
            details: { name: spec.name, log: files.log },
          });
        }
      }
      if (ended) {
        await removeSandboxFiles(dir, spec.name);
        throw new LifeboatError('LFB_ERR_LAB', `the keeper of sandbox ${spec.name} ended (${exit}) before the sandbox ran: ${await logTail()}`, {
          details: { name: spec.name, log: files.log },
        });
      }
      if (signal.aborted) {
        // Ctrl-C while it starts: the sandbox is not wanted (the keeper, in a process group of its own, did not get the signal).
        progress(`sandbox ${spec.name}: interrupted; removing what it made`);
        child.kill('SIGTERM');
        await waitExit(() => exit !== undefined, STOP_WAIT_MS);
        await removeSandboxFiles(dir, spec.name);
        const name = String(signal.reason);
        throw new LifeboatError('LFB_ERR_INTERRUPTED', `interrupted by ${name} while sandbox ${spec.name} started; it was removed`, {
          details: { signal: name, name: spec.name },
        });
      }
      if (performance.now() > deadline) {
        child.kill('SIGTERM');
        await waitExit(() => exit !== undefined, STOP_WAIT_MS);
        await removeSandboxFiles(dir, spec.name);
        throw new LifeboatError(
          'LFB_ERR_VM',
          `sandbox ${spec.name} was not running after ${spec.bootTimeoutS + START_SLACK_S} s and was removed: ${await logTail()}`,
          {
            details: { name: spec.name, log: files.log },
          },
        );
      }
      await sleep(200);
    }
  } finally {
    // From here on the keeper lives on its own.
    child.unref();
  }
}

async function waitExit(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** Waits (up to 15 s) until the QEMU processes of a sandbox's stopped sessions are gone (a pid reused since is not waited for). */
async function waitQemuGone(s: SandboxStatus): Promise<void> {
  const pids = s.vms.flatMap((v) => (qemuRuns(v.pid) ? [v.pid!] : []));
  await waitExit(() => pids.every((p) => !qemuRuns(p)), 15_000);
}

/** SIGTERM to the keeper (it removes the sandbox, then exits); SIGKILL if it has not ended after 3 minutes. */
async function stopKeeper(s: SandboxStatus): Promise<void> {
  try {
    process.kill(s.owner.pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitExit(() => !isAlive(s.owner), STOP_WAIT_MS)) return;
  try {
    process.kill(s.owner.pid, 'SIGKILL');
  } catch {
    // ended meanwhile
  }
  await waitExit(() => !isAlive(s.owner), 10_000);
}

/** The readable lines of one sandbox. */
function describe(s: SandboxStatus & { alive: boolean; vms: readonly (SandboxStatus['vms'][number] & { running?: boolean })[] }): string[] {
  const state = s.alive ? s.state : 'left by a keeper that ended (removed by the next sandbox start, or sandbox stop)';
  const lines = [`sandbox ${s.name}: ${state}${s.labId ? `, lab ${s.labId} (${s.netns})` : ''}, keeper pid ${s.owner.pid}, since ${s.startedAt}`];
  for (const v of s.vms)
    lines.push(`  ${v.job} @ ${v.point}  ${v.name} ${v.ip}  session ${v.session}${v.running === false ? '  (its VM is not running)' : ''}`);
  for (const f of s.forwards) lines.push(`  forward ${f.listen} -> ${f.job} ${f.to}`);
  if (s.error) lines.push(`  error: ${s.error.message} [${s.error.code}]`);
  return lines;
}
