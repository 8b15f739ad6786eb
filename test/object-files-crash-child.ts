/**
 * The writer that test/object-files-crash*.test.ts kill with SIGKILL: it
 * loops until killed over a few files of an ObjectFileStorage (packs of
 * 64 KiB, so that its big writes flush packs before the commit), and
 * journals each step to a local file, fsynced, so the parent knows which
 * states a file may be in after the kill:
 *
 *   syncing <file> <counter> <sha256>     before a commit (sync(); an open that creates or empties the file)
 *   committed <file> <counter> <sha256>   after it returned
 *   renaming <from> <to> <counter>        before rename(from, to)
 *   renamed <from> <to> <counter>         after it returned
 *   norename <from> <to> <counter>        rename found no <from> (nothing changed)
 *   removing <file> <counter>             before remove(file)
 *   removed <file> <counter>              after it returned (noremove: there was no such file)
 *
 * The sha256 is of the bytes the child's own model of the file holds: the
 * bytes it read at open, with its writes and truncates applied. A step that
 * fails writes `error <message>` and exits 1 (the parent fails the round).
 *   node object-files-crash-child.js <journal> <seed> <counter base> <most bytes of a file>
 * with the store in LFB_CRASH_STORE (JSON, a CrashStore: crash-harness.ts).
 */
import { appendFileSync, closeSync, fsyncSync, openSync } from 'node:fs';
import { ObjectFileStorage } from '../src/objects/object-files.js';
import { prng } from '../src/testing/prng.js';
import { CRASH_FILES, CRASH_ROOT, isNoSuchFile, openCrashStore, patternBytes, readWhole, sha256, type CrashStore } from './object-files-crash-harness.js';

const [journalPath, seedText, baseText, maxText] = process.argv.slice(2) as [string, string, string, string];
const spec = JSON.parse(process.env['LFB_CRASH_STORE'] ?? '') as CrashStore;
const next = prng(Number(seedText));
const r = (n: number): number => Math.floor(next() * n);

const journal = openSync(journalPath, 'a');
function note(line: string): void {
  appendFileSync(journal, `${line}\n`);
  fsyncSync(journal);
}

const store = await openCrashStore(spec);
const storage = new ObjectFileStorage(store, CRASH_ROOT, { packBytes: 64 * 1024 });
const path = (rel: string): string => `${CRASH_ROOT}/${rel}`;

/** A file bigger than this is cut down: files stay around a few packs' worth. */
const MAX_SIZE = Number(maxText);

let counter = Number(baseText);

const EMPTY = sha256(Buffer.alloc(0));

/** `model` with `data` written at `at` (grown as needed: a gap reads as zeros). */
function put(model: Buffer, data: Buffer, at: number): Buffer {
  const out = at + data.length > model.length ? Buffer.concat([model, Buffer.alloc(at + data.length - model.length)]) : model;
  data.copy(out, at);
  return out;
}

async function step(): Promise<void> {
  counter++;
  const op = r(20);
  if (op < 4) {
    const from = CRASH_FILES[r(CRASH_FILES.length)]!;
    const to = CRASH_FILES.filter((f) => f !== from)[r(CRASH_FILES.length - 1)]!;
    note(`renaming ${from} ${to} ${counter}`);
    try {
      await storage.rename(path(from), path(to));
    } catch (err) {
      if (!isNoSuchFile(err)) throw err;
      note(`norename ${from} ${to} ${counter}`);
      return;
    }
    note(`renamed ${from} ${to} ${counter}`);
    return;
  }
  const rel = CRASH_FILES[r(CRASH_FILES.length)]!;
  if (op < 5) {
    note(`removing ${rel} ${counter}`);
    note(`${(await storage.remove(path(rel))) ? 'removed' : 'noremove'} ${rel} ${counter}`);
    return;
  }
  let file;
  if (op < 7) {
    // Emptied (or created) at open, as O_TRUNC: a commit of no bytes.
    note(`syncing ${rel} ${counter} ${EMPTY}`);
    file = await storage.open(path(rel), 'replace');
    note(`committed ${rel} ${counter} ${EMPTY}`);
  } else {
    try {
      file = await storage.open(path(rel), 'write');
    } catch (err) {
      if (!isNoSuchFile(err)) throw err;
      // Creating an absent file commits it (empty) at once.
      note(`syncing ${rel} ${counter} ${EMPTY}`);
      file = await storage.open(path(rel), 'create');
      note(`committed ${rel} ${counter} ${EMPTY}`);
    }
  }
  try {
    let model = await readWhole(file);
    const writes = 2 + r(5);
    for (let k = 0; k < writes; k++) {
      const kind = r(10);
      if (kind < 1 || model.length > MAX_SIZE) {
        // Truncate: mostly shorter, sometimes past the end (a hole).
        const length = kind < 1 && r(3) === 0 ? model.length + r(20_000) : r(model.length + 1);
        await file.truncate(length);
        model = length <= model.length ? Buffer.from(model.subarray(0, length)) : Buffer.concat([model, Buffer.alloc(length - model.length)]);
        continue;
      }
      if (kind >= 8) {
        // Writes at once to ranges apart (as a served disk's requests): a flush one of them starts runs while the others land.
        const pieces: [number, Buffer][] = [];
        let at = r(model.length + 1);
        for (let n = 2 + r(4); n > 0; n--) {
          pieces.push([at, patternBytes(next, 1 + r(70_000))]);
          at += pieces[pieces.length - 1]![1].length + r(5000);
        }
        await Promise.all(pieces.map(([p, data]) => file.pwrite(data, p)));
        for (const [p, data] of pieces) model = put(model, data, p);
        continue;
      }
      // Big writes (past a pack) or small ones; anywhere up to a little past the end (overwrites, appends, holes).
      const length = kind < 5 ? 40_000 + r(160_000) : 1 + r(6000);
      const at = r(model.length + 10_000);
      const data = patternBytes(next, length);
      await file.pwrite(data, at);
      // Sometimes a part again (the same bytes): a record that replaces part of one in memory or in a pack.
      if (r(3) === 0) {
        const again = r(length);
        await file.pwrite(data.subarray(again, again + r(length - again + 1)), at + again);
      }
      model = put(model, data, at);
    }
    // What the open file reads before its commit (memory and packs together) is the model.
    const seen = await readWhole(file);
    if (!seen.equals(model))
      throw new Error(`${rel}: the open file reads ${seen.length} bytes (${sha256(seen)}), not the ${model.length} written (${sha256(model)})`);
    const sha = sha256(model);
    note(`syncing ${rel} ${counter} ${sha}`);
    await file.sync();
    note(`committed ${rel} ${counter} ${sha}`);
  } finally {
    // Nothing left to commit: close does no put.
    await file.close();
  }
}

try {
  note(`start ${seedText}`);
  process.stdout.write('ready\n');
  for (;;) await step();
} catch (err) {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`${text}\n`);
  note(`error ${text.replace(/\n/g, ' | ')}`);
  closeSync(journal);
  process.exit(1);
}
