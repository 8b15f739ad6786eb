import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { processAlive } from '../core/process-alive.js';
import { endProcess, isMountPoint, unmountFuse } from './guestfish.js';

/**
 * Every browse has a private folder under <tmp>/lifeboat-files/ with a record
 * of who owns it and what it started (record.json). A browse whose owner was
 * killed (-9) leaves its guestfish server and appliance (and, for files
 * mount, its FUSE tree) behind; the next `lifeboat files` command ends them
 * (sweepStale).
 */
export interface BrowseRecord {
  readonly ownerPid: number;
  /** files mount: where its FUSE tree is. */
  readonly mountAt?: string;
  readonly guestfishPid?: number;
  readonly qemuPid?: number;
  /** `files mount`: the folder the user named. */
  readonly userMount?: boolean;
}

export function browsesDir(): string {
  return join(tmpdir(), 'lifeboat-files');
}

export async function newWorkDir(): Promise<string> {
  await mkdir(browsesDir(), { recursive: true, mode: 0o700 });
  return mkdtemp(join(browsesDir(), 'b-'));
}

export async function writeRecord(workDir: string, r: BrowseRecord): Promise<void> {
  await writeFile(join(workDir, 'record.json'), JSON.stringify(r), { mode: 0o600 });
}

export async function readRecord(workDir: string): Promise<BrowseRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(workDir, 'record.json'), 'utf8')) as BrowseRecord;
  } catch {
    return undefined;
  }
}

/** The recorded browses: folder and record. */
export async function listRecords(): Promise<{ workDir: string; record: BrowseRecord }[]> {
  const out: { workDir: string; record: BrowseRecord }[] = [];
  for (const n of await readdir(browsesDir()).catch(() => [] as string[])) {
    const workDir = join(browsesDir(), n);
    const record = await readRecord(workDir);
    if (record) out.push({ workDir, record });
  }
  return out;
}

/** Ends what a browse started and removes its folder (never while a FUSE tree is still mounted in it). */
export async function cleanUp(workDir: string, r: BrowseRecord | undefined): Promise<void> {
  if (r) {
    if (r.mountAt !== undefined) await unmountFuse(r.mountAt).catch(() => undefined);
    await endProcess(r.guestfishPid);
    await endProcess(r.qemuPid);
  }
  const tree = join(workDir, 'tree');
  await unmountFuse(tree).catch(() => undefined);
  if (!(await isMountPoint(tree).catch(() => true))) await rm(workDir, { recursive: true, force: true });
}

/** Cleans up the browses whose owner is gone. */
export async function sweepStale(): Promise<number> {
  let n = 0;
  for (const { workDir, record } of await listRecords()) {
    if (processAlive(record.ownerPid)) continue;
    await cleanUp(workDir, record);
    n++;
  }
  return n;
}

export async function findMount(dir: string): Promise<{ workDir: string; record: BrowseRecord } | undefined> {
  const want = resolve(dir);
  return (await listRecords()).find((x) => x.record.userMount === true && x.record.mountAt !== undefined && resolve(x.record.mountAt) === want);
}
