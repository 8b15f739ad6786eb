/**
 * Kill -9 of a writer of an ObjectFileStorage at random moments
 * (object-files-crash-child.ts), and what must hold after each kill: every
 * file is one of its committed states (the last commit that returned, or
 * the one in flight: never a mix), every root decodes and names packs that
 * are there, the next writer opens, writes and commits, and collect(0)
 * leaves no pack no root names while every file keeps its bytes.
 * Used by object-files-crash.test.ts (a local folder) and
 * object-files-crash-s3.test.ts (radosgw).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isLifeboatError } from '../src/core/errors.js';
import { DIR_MARK, PACKS, ROOTS, decodeRoot } from '../src/objects/file-root.js';
import { LocalObjectStore } from '../src/objects/local-object-store.js';
import { ObjectFileStorage } from '../src/objects/object-files.js';
import type { ObjectStore } from '../src/objects/object-store.js';
import type { S3Connection } from '../src/objects/s3-config.js';
import type { StorageFile } from '../src/storage/storage.js';
import { prng } from '../src/testing/prng.js';

const CHILD = fileURLToPath(new URL('./object-files-crash-child.js', import.meta.url));

/** Where the child's store is (passed to it as JSON in LFB_CRASH_STORE). */
export type CrashStore =
  | { readonly kind: 'local'; readonly dir: string }
  | { readonly kind: 's3'; readonly url: string; readonly connection: S3Connection; readonly objectLock?: boolean };

export const CRASH_ROOT = '/repo';
/** The files written, renamed onto each other: one in a folder. */
export const CRASH_FILES = ['a', 'b', 'd/c'] as const;

/** Opens the store (the S3 SDK is loaded only for S3: a local child starts faster). */
export async function openCrashStore(spec: CrashStore): Promise<ObjectStore> {
  if (spec.kind === 'local') return LocalObjectStore.open(spec.dir);
  const { S3ObjectStore } = await import('../src/objects/s3-object-store.js');
  return S3ObjectStore.open(spec.url, {
    connection: spec.connection,
    ...(spec.objectLock === true ? { objectLock: true } : {}),
  });
}

export function isNoSuchFile(err: unknown): boolean {
  return isLifeboatError(err) && err.details['errno'] === 'ENOENT';
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** `n` bytes from the generator, four at a time. */
export function patternBytes(next: () => number, n: number): Buffer {
  const b = Buffer.alloc(Math.ceil(n / 4) * 4);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(next() * 0x1_0000_0000), i);
  return b.subarray(0, n);
}

/** The whole file, by its size. */
export async function readWhole(file: StorageFile): Promise<Buffer> {
  const size = await file.size();
  const out = Buffer.alloc(size);
  let at = 0;
  while (at < size) {
    const n = await file.pread(out.subarray(at), at);
    if (n === 0) throw new Error(`${file.path}: read 0 bytes at ${at} of ${size}`);
    at += n;
  }
  return out;
}

const ABSENT = 'absent';
/** A file's state: the sha256 of its bytes, or ABSENT. */
type State = string;

const path = (rel: string): string => `${CRASH_ROOT}/${rel}`;

/** Every file's state, each read by a new ObjectFileStorage (open 'read', size, pread of it all). */
async function readStates(store: ObjectStore): Promise<Map<string, State>> {
  const storage = new ObjectFileStorage(store, CRASH_ROOT);
  const out = new Map<string, State>();
  for (const rel of CRASH_FILES) {
    let file;
    try {
      file = await storage.open(path(rel), 'read');
    } catch (err) {
      if (!isNoSuchFile(err)) throw err;
      out.set(rel, ABSENT);
      continue;
    }
    try {
      out.set(rel, sha256(await readWhole(file)));
    } finally {
      await file.close();
    }
  }
  // The listings agree: a file is listed when it exists, its folder when something in it does.
  const exists = (rel: string): boolean => out.get(rel) !== ABSENT;
  assert.deepEqual(
    await storage.list(CRASH_ROOT),
    ['a', 'b', 'd'].filter((n) => (n === 'd' ? exists('d/c') : exists(n))),
    'list of the root folder',
  );
  assert.deepEqual(await storage.list(path('d')), exists('d/c') ? ['c'] : [], 'list of folder d');
  return out;
}

/** Roots by name, each decoded (a root that does not decode fails here), and the packs there are. */
async function readObjects(store: ObjectStore): Promise<{ roots: Map<string, string[]>; packs: Set<string> }> {
  const roots = new Map<string, string[]>();
  for await (const o of store.list(ROOTS)) {
    if (o.name.endsWith(`#${DIR_MARK}`)) continue;
    const root = decodeRoot(o.name, await store.get(o.name));
    roots.set(
      o.name,
      root.extents.map((e) => e.pack!),
    );
  }
  const packs = new Set<string>();
  for await (const o of store.list(PACKS)) packs.add(o.name);
  return { roots, packs };
}

/** Every root decodes and every pack one names is there; with `collected`, also one root a file and no pack no root names. */
async function checkObjects(store: ObjectStore, states: ReadonlyMap<string, State>, collected: boolean): Promise<void> {
  const { roots, packs } = await readObjects(store);
  const named = new Set<string>();
  for (const [root, ps] of roots)
    for (const p of ps) {
      assert.ok(packs.has(p), `root ${root} names pack ${p}, which is not there`);
      named.add(p);
    }
  if (!collected) return;
  assert.deepEqual(
    [...packs].filter((p) => !named.has(p)),
    [],
    'packs no root names, after collect(0)',
  );
  const files = [...roots.keys()].map((n) => n.slice(ROOTS.length, n.lastIndexOf('#'))).sort();
  assert.deepEqual(
    files,
    CRASH_FILES.filter((rel) => states.get(rel) !== ABSENT),
    'one root for each file, after collect(0)',
  );
}

type Pending =
  | { readonly kind: 'sync'; readonly rel: string; readonly sha: string }
  | { readonly kind: 'rename'; readonly from: string; readonly to: string; readonly moved: State; readonly old: State }
  | { readonly kind: 'remove'; readonly rel: string; readonly old: State };

/** The states the journal allows after the kill: `state` for what returned, and the step in flight. */
function replay(journal: string, start: ReadonlyMap<string, State>): { state: Map<string, State>; pending: Pending | undefined; steps: number } {
  const state = new Map(start);
  let pending: Pending | undefined;
  let steps = 0;
  const lines = journal.split('\n');
  // A last line without its newline was cut by the kill: its step had not begun.
  lines.pop();
  for (const line of lines) {
    const [kind, ...rest] = line.split(' ');
    if (kind === 'start') continue;
    if (kind === 'error') assert.fail(`the writer failed: ${rest.join(' ')}`);
    if (kind === 'syncing') {
      assert.equal(pending, undefined, `journal: ${line} while a step is in flight`);
      pending = { kind: 'sync', rel: rest[0]!, sha: rest[2]! };
    } else if (kind === 'committed') {
      assert.deepEqual(pending, { kind: 'sync', rel: rest[0]!, sha: rest[2]! }, `journal: ${line} is not the commit in flight`);
      state.set(rest[0]!, rest[2]!);
      pending = undefined;
      steps++;
    } else if (kind === 'renaming') {
      assert.equal(pending, undefined, `journal: ${line} while a step is in flight`);
      pending = { kind: 'rename', from: rest[0]!, to: rest[1]!, moved: state.get(rest[0]!)!, old: state.get(rest[1]!)! };
    } else if (kind === 'renamed' || kind === 'norename') {
      assert.ok(pending?.kind === 'rename' && pending.from === rest[0] && pending.to === rest[1], `journal: ${line} is not the rename in flight`);
      // The child found the file where this model says it is, or found none where it says there is none.
      assert.equal(pending.moved === ABSENT, kind === 'norename', `journal: ${line}, but ${pending.from} was ${pending.moved}`);
      if (kind === 'renamed') {
        state.set(pending.to, pending.moved);
        state.set(pending.from, ABSENT);
      }
      pending = undefined;
      steps++;
    } else if (kind === 'removing') {
      assert.equal(pending, undefined, `journal: ${line} while a step is in flight`);
      pending = { kind: 'remove', rel: rest[0]!, old: state.get(rest[0]!)! };
    } else if (kind === 'removed' || kind === 'noremove') {
      assert.ok(pending?.kind === 'remove' && pending.rel === rest[0], `journal: ${line} is not the remove in flight`);
      assert.equal(pending.old === ABSENT, kind === 'noremove', `journal: ${line}, but ${pending.rel} was ${pending.old}`);
      state.set(pending.rel, ABSENT);
      pending = undefined;
      steps++;
    } else assert.fail(`journal: unknown line ${JSON.stringify(line)}`);
  }
  return { state, pending, steps };
}

/** Whether `actual` is a state the journal allows; the reason when not. */
function allowed(actual: ReadonlyMap<string, State>, state: ReadonlyMap<string, State>, pending: Pending | undefined): string | undefined {
  const show = (m: ReadonlyMap<string, State>): string => CRASH_FILES.map((f) => `${f}=${m.get(f)!.slice(0, 12)}`).join(' ');
  const options: ReadonlyMap<string, State>[] = [state];
  if (pending?.kind === 'sync') options.push(new Map(state).set(pending.rel, pending.sha));
  if (pending?.kind === 'rename' && pending.moved !== ABSENT) {
    // The new name is written first, then the old one removed: both names for a while, never neither.
    options.push(new Map(state).set(pending.to, pending.moved));
    options.push(new Map(state).set(pending.to, pending.moved).set(pending.from, ABSENT));
  }
  if (pending?.kind === 'remove') options.push(new Map(state).set(pending.rel, ABSENT));
  if (options.some((o) => CRASH_FILES.every((f) => o.get(f) === actual.get(f)))) return undefined;
  return `files are ${show(actual)}; allowed: ${options.map(show).join(' | ')} (in flight: ${JSON.stringify(pending)})`;
}

/**
 * Runs the child and kills it: with `kill.ms`, by SIGKILL that long after it is ready; with `kill.point`, by
 * its own SIGKILL at that durable step of the local store (LIFEBOAT_CRASH_AT, src/core/crash-point.ts), or
 * by ours after 10 s if it has not got there. Fails if it ends another way.
 */
function runAndKill(spec: CrashStore, args: readonly string[], kill: Kill, live: Set<ChildProcess>): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, ...args], {
      env: { ...process.env, LFB_CRASH_STORE: JSON.stringify(spec), LIFEBOAT_CRASH_AT: String(kill.point ?? 0) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(p);
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    // A child that never gets ready (a store that does not open) is killed too, and fails the round.
    const deadline = setTimeout(() => p.kill('SIGKILL'), 60_000);
    let ready = false;
    p.stdout!.on('data', (d: Buffer) => {
      if (ready || !d.toString().includes('ready')) return;
      ready = true;
      timer = setTimeout(() => p.kill('SIGKILL'), kill.ms ?? 10_000);
    });
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => {
      live.delete(p);
      clearTimeout(deadline);
      clearTimeout(timer);
      if (signal === 'SIGKILL' && (ready || kill.point !== undefined)) resolve();
      else reject(new Error(`the writer ended with ${signal ?? `code ${code}`} before its kill${ready ? '' : ' (never ready)'}: ${stderr.slice(-4000)}`));
    });
  });
}

/** How a round's writer dies: `ms` after it is ready, or at its `point`-th durable step. */
interface Kill {
  readonly ms?: number;
  readonly point?: number;
}

/** The next writer: opens each file (creating an absent one), writes (a pack's worth at least), commits; returns the new states. */
async function writeEach(store: ObjectStore, next: () => number, states: Map<string, State>): Promise<void> {
  const storage = new ObjectFileStorage(store, CRASH_ROOT, { packBytes: 64 * 1024 });
  for (const rel of CRASH_FILES) {
    const file = await storage.open(path(rel), 'create');
    try {
      let model = await readWhole(file);
      assert.equal(sha256(model), states.get(rel) === ABSENT ? sha256(Buffer.alloc(0)) : states.get(rel), `${rel}: the next writer opens the bytes read`);
      if (model.length > 256 * 1024) {
        await file.truncate(100_000);
        model = Buffer.from(model.subarray(0, 100_000));
      }
      for (const length of [70_000 + Math.floor(next() * 30_000), 1 + Math.floor(next() * 3000)]) {
        const at = Math.floor(next() * (model.length + 1));
        const data = patternBytes(next, length);
        await file.pwrite(data, at);
        if (at + length > model.length) model = Buffer.concat([model, Buffer.alloc(at + length - model.length)]);
        data.copy(model, at);
      }
      await file.sync();
      states.set(rel, sha256(model));
    } finally {
      await file.close();
    }
  }
}

export interface CrashOptions {
  readonly label: string;
  readonly spec: CrashStore;
  readonly seed: number;
  /** Rounds killed from outside, minMs to maxMs after the child is ready. */
  readonly rounds: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Rounds (mixed in with the others) whose child kills itself at a random durable step of a local store, 1 to maxPoint. */
  readonly pointRounds?: number;
  readonly maxPoint?: number;
  /** The writer cuts a file down when it grows past this (default 768 KiB). */
  readonly maxFileBytes?: number;
  /** How long after the kill the files may still change (requests the writer had sent); 0 (default): none. */
  readonly settleMs?: number;
  /** collect(0) after the next writer of every this many rounds (and always at the end). */
  readonly collectEvery: number;
}

export interface CrashSummary {
  /** Steps (commits, renames, removes) the killed writers completed; kills that left a step in flight, and those after which it is seen done. */
  readonly steps: number;
  readonly inFlight: number;
  readonly inFlightLanded: number;
  /** Kills after which a file changed between the read just after the kill and the one settleMs later. */
  readonly lateLanded: number;
  readonly packsCollected: number;
}

export async function crashRounds(o: CrashOptions): Promise<CrashSummary> {
  const next = prng(o.seed);
  const work = await mkdtemp(join(tmpdir(), 'lfb-objcrash-'));
  const live = new Set<ChildProcess>();
  const killAll = (): void => {
    for (const p of live) p.kill('SIGKILL');
  };
  process.on('exit', killAll);
  const store = await openCrashStore(o.spec);
  let round = -1;
  let steps = 0;
  let inFlight = 0;
  let inFlightLanded = 0;
  let packsCollected = 0;
  let lateLanded = 0;
  let journalText: string | undefined;
  try {
    const states = new Map<string, State>(CRASH_FILES.map((f) => [f, ABSENT]));
    const check = async (collected: boolean): Promise<void> => {
      assert.deepEqual(await readStates(store), states, 'file states');
      await checkObjects(store, states, collected);
    };
    const collect = async (): Promise<void> => {
      packsCollected += (await new ObjectFileStorage(store, CRASH_ROOT).collect(0)).packsRemoved;
      await check(true);
    };
    await writeEach(store, next, states);
    const pointRounds = o.pointRounds ?? 0;
    const kills: Kill[] = [];
    for (let i = 0; i < o.rounds; i++) kills.push({ ms: o.minMs + Math.floor(next() * (o.maxMs - o.minMs + 1)) });
    for (let i = 0; i < pointRounds; i++) kills.push({ point: 1 + Math.floor(next() * (o.maxPoint ?? 1)) });
    for (let i = kills.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [kills[i], kills[j]] = [kills[j]!, kills[i]!];
    }
    for (round = 0; round < kills.length; round++) {
      const journal = join(work, `journal-${round}`);
      const kill = kills[round]!;
      const how = kill.ms !== undefined ? `killed ${kill.ms} ms after ready` : `killed at durable step ${kill.point}`;
      const started = Date.now();
      await runAndKill(o.spec, [journal, String((o.seed * 1000 + round) >>> 0), String(round * 1_000_000), String(o.maxFileBytes ?? 768 * 1024)], kill, live);
      const ended = Date.now();
      journalText = await readFile(journal, 'utf8');
      const replayed = replay(journalText, states);
      steps += replayed.steps;
      const checkAllowed = (actual: ReadonlyMap<string, State>, when: string): void => {
        const why = allowed(actual, replayed.state, replayed.pending);
        assert.equal(why, undefined, `${when} (${how}, ${replayed.steps} steps done): ${why}`);
      };
      const first = await readStates(store);
      checkAllowed(first, 'just after the kill');
      let actual = first;
      let late = false;
      if ((o.settleMs ?? 0) > 0) {
        // A request the writer had sent may still be carried out after its death (a PUT radosgw had whole): the
        // files may change once more, to a state the journal allows, before the next writer comes.
        await new Promise((resolve) => setTimeout(resolve, o.settleMs));
        actual = await readStates(store);
        checkAllowed(actual, `${o.settleMs} ms after the kill`);
        late = CRASH_FILES.some((f) => actual.get(f) !== first.get(f));
        if (late) lateLanded++;
      }
      const landed = replayed.pending !== undefined && CRASH_FILES.some((f) => actual.get(f) !== replayed.state.get(f));
      if (replayed.pending !== undefined) inFlight++;
      if (landed) inFlightLanded++;
      if (process.env['LFB_CRASH_VERBOSE'] !== undefined)
        process.stderr.write(
          `${o.label} round ${round}: ${how} (${ended - started} ms after spawn), ${replayed.steps} steps, in flight: ${replayed.pending?.kind ?? 'nothing'}${landed ? ' (landed)' : ''}${late ? ' (landed after the kill)' : ''}\n`,
        );
      for (const [f, s] of actual) states.set(f, s);
      await checkObjects(store, states, false);
      // The next writer's commits are checked by the next round (whose writer keeps or changes them as its
      // journal says) or by the last collect's check.
      await writeEach(store, next, states);
      if ((round + 1) % o.collectEvery === 0) await collect();
      journalText = undefined;
      if (process.env['LFB_CRASH_VERBOSE'] !== undefined) process.stderr.write(`  checks and next writer: ${Date.now() - ended} ms\n`);
    }
    await collect();
    return { steps, inFlight, inFlightLanded, lateLanded, packsCollected };
  } catch (err) {
    const where = round < 0 ? 'setup' : round >= o.rounds + (o.pointRounds ?? 0) ? 'the final collect' : `round ${round}`;
    const tail =
      journalText === undefined ? '' : `\nthe killed writer's journal (its last 40 lines):\n${journalText.trimEnd().split('\n').slice(-40).join('\n')}`;
    const message = `object files crash (${o.label}): seed ${o.seed}, ${where} (replay with LFB_CRASH_SEED=${o.seed}): ${err instanceof Error ? err.message : String(err)}${tail}`;
    process.stderr.write(`${message}\n`);
    throw new Error(message, { cause: err });
  } finally {
    killAll();
    process.off('exit', killAll);
    await store.close();
    await rm(work, { recursive: true, force: true });
  }
}
