/**
 * A sandbox's files in its folder (`<repo>/surebackup/sandboxes`): what was
 * asked (`<name>.spec.json`, written by `sandbox start`), what runs
 * (`<name>.json`, written by the sandbox's keeper: its owner process, VMs,
 * sessions and forwards) and the keeper's log (`<name>.log`). The keeper is
 * named with its start time as well as its pid, so a reused pid is never taken
 * for a live keeper.
 */
import { readFileSync } from 'node:fs';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, fromFsError } from '../core/index.js';
import type { LabForwardSpec } from './forwarder.js';
import { isAlive, processStart, type ProcessRef } from './lab-record.js';

export interface SandboxSpec {
  readonly version: 1;
  readonly name: string;
  /** The group in boot order; point is a point id or "latest". */
  readonly vms: readonly { readonly job: string; readonly point: string }[];
  readonly forwards: readonly LabForwardSpec[];
  /** --forward-any: forwards may listen beyond the host's loopback. */
  readonly forwardAny: boolean;
  /** Seconds each VM has to pass its heartbeat. */
  readonly bootTimeoutS: number;
  readonly serialPattern?: string;
  readonly accel?: 'kvm' | 'tcg';
  readonly subnet?: string;
}

export interface SandboxVmStatus {
  readonly job: string;
  readonly point: string;
  /** Its name in the lab's DNS. */
  readonly name: string;
  readonly ip: string;
  /** The instant session (shown with its screen in the console's sessions page). */
  readonly session: string;
  /** QEMU's pid, once started. */
  readonly pid?: number;
}

export interface SandboxForwardStatus {
  /** `<host>:<port>` on the host, with the port the system chose for 0. */
  readonly listen: string;
  readonly host: string;
  readonly port: number;
  readonly job: string;
  /** `<ip>:<port>` in the lab. */
  readonly to: string;
}

export interface SandboxStatus {
  readonly version: 1;
  readonly name: string;
  readonly state: 'starting' | 'running' | 'stopping' | 'failed';
  /** The keeper: the process that owns the lab (its record names it too). */
  readonly owner: ProcessRef;
  readonly startedAt: string;
  readonly readyAt?: string;
  readonly labId?: string;
  readonly netns?: string;
  readonly vms: readonly SandboxVmStatus[];
  readonly forwards: readonly SandboxForwardStatus[];
  /** Why a start failed (state "failed"): the error's code and message. */
  readonly error?: { readonly code: string; readonly message: string };
  readonly log: string;
}

export interface SandboxFiles {
  readonly spec: string;
  readonly status: string;
  readonly log: string;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

export function validateSandboxName(name: string): void {
  if (!NAME.test(name))
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `sandbox name "${name}" must be 1-32 lowercase letters, digits or '-', starting with a letter or digit`,
    );
}

export const sandboxFiles = (dir: string, name: string): SandboxFiles => ({
  spec: join(dir, `${name}.spec.json`),
  status: join(dir, `${name}.json`),
  log: join(dir, `${name}.log`),
});

/** Instant session names of a sandbox's VMs: its name shows in the console's sessions page. */
export const sandboxSessionName = (name: string, index: number): string => `sbx-${name}-${index}`;

async function readJson<T>(file: string, what: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(err, `reading ${what}`, file);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new LifeboatError('LFB_ERR_LAB', `reading ${what} ${file}: ${(err as Error).message}`, { cause: err, details: { file } });
  }
}

export const readSandboxSpec = (dir: string, name: string): Promise<SandboxSpec | undefined> =>
  readJson<SandboxSpec>(sandboxFiles(dir, name).spec, 'the sandbox spec');
export const readSandboxStatus = (dir: string, name: string): Promise<SandboxStatus | undefined> =>
  readJson<SandboxStatus>(sandboxFiles(dir, name).status, 'the sandbox status');

/** Replaces a file whole (temporary file, rename): a reader sees the old text or the new, never half. */
export async function writeJsonFile(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw fromFsError(err, 'writing', file);
  }
}

/** Removes a sandbox's spec and status (its log stays, for what happened). */
export async function removeSandboxFiles(dir: string, name: string): Promise<void> {
  const f = sandboxFiles(dir, name);
  await rm(f.status, { force: true });
  await rm(f.spec, { force: true });
}

/** Whether the keeper a status names still runs. */
export const keeperAlive = (s: Pick<SandboxStatus, 'owner'>): boolean => isAlive(s.owner);

/** Whether a QEMU process of that pid runs (a pid reused by another program is not it). */
export function qemuRuns(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system') && processStart(pid) !== undefined;
  } catch {
    return false;
  }
}

export type ListedSandbox = SandboxStatus & { readonly alive: boolean; readonly vms: readonly (SandboxVmStatus & { readonly running: boolean })[] };

/** Every sandbox of a folder with whether its keeper runs, and each VM's QEMU. */
export async function listSandboxes(dir: string): Promise<ListedSandbox[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromFsError(err, 'listing the sandboxes', dir);
  }
  const out: ListedSandbox[] = [];
  for (const n of names.sort()) {
    const m = /^([a-z0-9][a-z0-9-]*)\.json$/.exec(n);
    if (!m || n.endsWith('.spec.json')) continue;
    const s = await readSandboxStatus(dir, m[1]!);
    if (s) out.push({ ...s, alive: keeperAlive(s), vms: s.vms.map((v) => ({ ...v, running: qemuRuns(v.pid) })) });
  }
  return out;
}
