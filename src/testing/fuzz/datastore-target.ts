/**
 * The NFS procedures against the production file system: a
 * DatastoreFileSystem with one session (two disks over checked in-memory
 * devices, real files in a temporary folder). Its handles carry a kind, the
 * session's uuid and a disk index or an inode, so mutated handles probe how
 * it parses them. Real files keep state between inputs: the fixture is
 * rebuilt every REBUILD_EVERY inputs that may have changed it, and a finding
 * that depends on earlier inputs is reported as not reproducing alone.
 */
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../core/clock.js';
import { isLifeboatError } from '../../core/errors.js';
import { NfsError, nfsProgram } from '../../nfs/index.js';
import { DatastoreFileSystem } from '../../recovery/datastore-fs.js';
import { XdrReader } from '../../rpc/xdr.js';
import { CheckedDisk } from './checked-disk.js';
import type { Rand } from './mutate.js';
import { callProcedure, type Programs } from './rpc-targets.js';
import { FuzzFailure, type FuzzTarget, type RunContext, type Verdict } from './target.js';
import { NFS_PROCEDURE_NAMES, nfsArgs, procedureSample, type NfsArgEnv } from './xdr-gen.js';

const SESSION_ID = '6c696665-626f-6174-2066-757a7a000001';
const REBUILD_EVERY = 64;
/** SETATTR, CREATE, MKDIR: the procedures that carry a mode. */
const SETS_MODE = new Set([2, 8, 9]);

/** Files and folders under `dir` with a set-id or sticky bit (never allowed on a session file: issue 12, defect 8). */
async function setIdFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(e.parentPath, e.name);
    const mode = (await lstat(path)).mode;
    if ((mode & 0o7000) !== 0) found.push(`${path} mode ${mode.toString(8)}`);
  }
  return found;
}
const NAMES = ['vm', 'vm.vmx', 'vm.nvram', 'logs', 'vmware.log', 'disk0-flat.vmdk', 'disk1-flat.vmdk', 'disk0.vmdk', 'new-file', 'new-dir', '.', '..'];

interface Fixture {
  readonly programs: Programs;
  readonly handles: readonly Buffer[];
  readonly filesDir: string;
}

/** Builds the session's files afresh in `dir` and learns the handles of everything in it. */
async function build(dir: string): Promise<Fixture> {
  const filesDir = join(dir, 'session');
  await rm(filesDir, { recursive: true, force: true });
  await mkdir(join(filesDir, 'logs', 'old'), { recursive: true });
  await writeFile(join(filesDir, 'vm.vmx'), 'displayName = "vm"\n');
  await writeFile(join(filesDir, 'vm.nvram'), Buffer.alloc(8192, 7));
  await writeFile(join(filesDir, 'logs', 'vmware.log'), 'log\n');
  const violations: string[] = [];
  const disk = (name: string, size: number): { name: string; device: CheckedDisk; allocatedBytes: () => number; mtimeMs: number } => ({
    name,
    device: new CheckedDisk(size, violations),
    allocatedBytes: () => 0,
    mtimeMs: 0,
  });
  const fs = new DatastoreFileSystem('/lifeboat', dir, systemClock);
  await fs.addSession({ id: SESSION_ID, name: 'vm', filesDir, disks: [disk('disk0', 1024 * 1024), disk('disk1', 65536)], createdMs: 0 });
  const root = fs.mount('/lifeboat')!;
  const session = await fs.lookup(root, 'vm');
  const logs = await fs.lookup(session, 'logs');
  const handles = [root, session, await fs.lookup(logs, 'vmware.log'), await fs.lookup(logs, 'old'), logs];
  for (const name of ['disk0-flat.vmdk', 'disk1-flat.vmdk', 'vm.vmx', 'vm.nvram']) handles.push(await fs.lookup(session, name));
  // A disk index past the session's disks, and a session that does not exist.
  const pastDisks = Buffer.from(handles[5]!);
  pastDisks.writeBigUInt64BE(2n, 18);
  const otherSession = Buffer.from(session);
  otherSession[17] = otherSession[17]! ^ 1;
  handles.push(pastDisks, otherSession);
  const faults: unknown[] = [];
  const onServerError = (err: unknown): void => {
    if (!(err instanceof NfsError) && !isLifeboatError(err)) faults.push(err);
  };
  const programs: Programs = { byNumber: new Map([[100003, nfsProgram(fs, { onServerError })]]), faults, violations, dirty: false };
  return { programs, handles, filesDir };
}

export function datastoreTarget(): FuzzTarget {
  let dir: string | undefined;
  let fixture: Fixture | undefined;
  let dirtyRuns = 0;
  const env: NfsArgEnv = {
    handle(r: Rand): Buffer {
      if (!fixture || r.chance(0.1)) return r.bytes(r.pick([1, 25, 26, 27, 56]));
      return r.pick(fixture.handles);
    },
    names: NAMES,
  };
  const args = nfsArgs(env);
  return {
    name: 'datastore',
    weight: 10,
    generate: (r) => procedureSample(args, r),
    label: (input) => (input.length < 4 ? 'short' : (NFS_PROCEDURE_NAMES[input.readUInt32BE(0)] ?? 'unknown')),
    async start() {
      dir = await mkdtemp(join(tmpdir(), 'lifeboat-fuzz-'));
      fixture = await build(dir);
    },
    async stop() {
      if (dir) await rm(dir, { recursive: true, force: true });
      dir = undefined;
      fixture = undefined;
    },
    async run(input: Buffer, ctx: RunContext): Promise<Verdict> {
      if (!dir || !fixture) throw new Error('datastore target used before start()');
      if (input.length < 4) return 'rejected';
      if (fixture.programs.dirty && ++dirtyRuns % REBUILD_EVERY === 0) fixture = await build(dir);
      const proc = input.readUInt32BE(0);
      fixture.programs.dirty = false;
      const verdict = await callProcedure(fixture.programs, 100003, 3, proc, new XdrReader(input, 4), ctx.valid);
      if (SETS_MODE.has(proc)) {
        const marked = await setIdFiles(fixture.filesDir);
        if (marked.length > 0) throw new FuzzFailure('oracle', `a session file became set-id or sticky: ${marked[0]}`);
      }
      return verdict;
    },
  };
}
