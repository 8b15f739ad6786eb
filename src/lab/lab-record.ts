/**
 * The lab's record, `<stateDir>/lab-<id>.json`: everything a lab made (its
 * namespace, taps, dnsmasq, the sessions the orchestrator started), written
 * before each thing is made, so that after a kill the next run can remove it
 * all. The owner is a pid with its start time: a pid reused by another process
 * after a reboot or a wrap is not taken for the owner.
 */
import { link, open, readFile, readdir, rename, unlink, mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LifeboatError, fromFsError } from '../core/index.js';

export interface ProcessRef {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  readonly start: string;
}

export interface LabRecord {
  readonly version: 1;
  readonly id: string;
  readonly netns: string;
  readonly subnet: string;
  readonly owner: ProcessRef;
  readonly createdAt: string;
  /** Taps recorded before each is made, wherever they are now (host or namespace). */
  readonly taps: readonly string[];
  readonly dnsmasq?: ProcessRef;
  /** Instant sessions the orchestrator started for this lab (recorded before each start). */
  readonly sessions: readonly string[];
}

export const labRecordPath = (stateDir: string, id: string): string => join(stateDir, `lab-${id}.json`);
const RECORD_NAME = /^lab-([0-9a-f]{1,6})\.json$/;

/** The start time of a live process, or undefined when there is no such process (or only its zombie). */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

export function selfRef(): ProcessRef {
  const start = processStart(process.pid);
  if (start === undefined) throw new LifeboatError('LFB_ERR_LAB', 'reading /proc/self/stat: the virtual lab needs /proc');
  return { pid: process.pid, start };
}

/** Whether the process a record names is still that process (same pid, same start). */
export function isAlive(ref: ProcessRef): boolean {
  return processStart(ref.pid) === ref.start;
}

// Updates of one record within this process go one after another (createTap and recordLabSession may overlap).
const chains = new Map<string, Promise<unknown>>();
function serialized<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const prev = chains.get(file) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const tail = next.catch(() => undefined);
  chains.set(file, tail);
  void tail.then(() => {
    if (chains.get(file) === tail) chains.delete(file);
  });
  return next;
}

/**
 * Writes the record durably: a temporary file, fsync, rename, fsync of the
 * folder. `exclusive` links the file into place instead, which fails when a
 * record is there already (another process making a lab of the same id).
 */
async function writeDurably(file: string, rec: LabRecord, exclusive = false): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(rec, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (exclusive) {
      try {
        await link(tmp, file);
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
    } else await rename(tmp, file);
    const dir = await open(join(file, '..'), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new LifeboatError('LFB_ERR_LAB', `making lab ${rec.id}: its record ${file} exists (another lab of this id is being made)`, {
        cause: err,
        details: { file },
      });
    throw fromFsError(err, 'writing the lab record', file);
  }
}

export async function readLabRecord(file: string): Promise<LabRecord | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(err, 'reading the lab record', file);
  }
  try {
    const rec = JSON.parse(text) as LabRecord;
    if (rec.version !== 1 || typeof rec.id !== 'string' || typeof rec.owner?.pid !== 'number') throw new Error('not a lab record');
    return { ...rec, taps: rec.taps ?? [], sessions: rec.sessions ?? [] };
  } catch (err) {
    throw new LifeboatError('LFB_ERR_LAB', `reading the lab record ${file}: ${(err as Error).message}`, { cause: err, details: { file } });
  }
}

export async function createLabRecord(stateDir: string, rec: LabRecord): Promise<void> {
  await mkdir(stateDir, { recursive: true }).catch((err: unknown) => {
    throw fromFsError(err, 'making the lab state folder', stateDir);
  });
  const file = labRecordPath(stateDir, rec.id);
  await serialized(file, () => writeDurably(file, rec, true));
}

/** Changes a record in place; a record already removed stays removed (undefined is returned). */
export function updateLabRecord(stateDir: string, id: string, change: (rec: LabRecord) => LabRecord): Promise<LabRecord | undefined> {
  const file = labRecordPath(stateDir, id);
  return serialized(file, async () => {
    const rec = await readLabRecord(file);
    if (rec === undefined) return undefined;
    const next = change(rec);
    await writeDurably(file, next);
    return next;
  });
}

export function removeLabRecord(stateDir: string, id: string): Promise<void> {
  const file = labRecordPath(stateDir, id);
  return serialized(file, async () => {
    await unlink(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fromFsError(err, 'removing the lab record', file);
    });
  });
}

/** The ids of the records in a state folder. */
export async function labRecordIds(stateDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(stateDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromFsError(err, 'listing the lab state folder', stateDir);
  }
  return names.flatMap((n) => RECORD_NAME.exec(n)?.[1] ?? []).sort();
}

/**
 * Records an instant session the orchestrator is about to start for lab `id`,
 * so that a run killed during or after the start has it stopped by the next
 * run's removeLeftoverLabs. LFB_ERR_LAB when the lab has no record (removed).
 */
export async function recordLabSession(stateDir: string, id: string, sessionName: string): Promise<void> {
  const rec = await updateLabRecord(stateDir, id, (r) => (r.sessions.includes(sessionName) ? r : { ...r, sessions: [...r.sessions, sessionName] }));
  if (rec === undefined) throw new LifeboatError('LFB_ERR_LAB', `recording session ${sessionName}: lab ${id} has no record in ${stateDir} (already removed)`);
}

/** Forgets a session the orchestrator stopped itself (the next run need not stop it again). */
export async function forgetLabSession(stateDir: string, id: string, sessionName: string): Promise<void> {
  await updateLabRecord(stateDir, id, (r) => ({ ...r, sessions: r.sessions.filter((s) => s !== sessionName) }));
}
