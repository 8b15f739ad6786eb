import { DAY_MS } from './immutable-until.js';
import { REPO_CONFIG } from './repository.js';

/**
 * What an immutable repository on S3 locks (object lock, COMPLIANCE), as its
 * objects are written: the packs and the committed root of every backup file
 * for the repository's days from the write, and lifeboat.json for good (a
 * century, or up to 2038: its immutableDays bounds every file's date, so it
 * must never be replaced with a lower one). A backup file's temporary name gets no locked
 * root (it is renamed away), but its packs are locked: they become the file's.
 * job.json, the .vbm and immutable.json change at every run and stay unlocked,
 * as on a folder. The record's date of a file (immutable.json) can be later
 * than its lock (retention keeps it longer): Lifeboat's own guards hold it
 * that long.
 */
/**
 * radosgw 16 keeps a retention date in 32 bits of seconds: 2126 came back as
 * 1990 (and unlocked at once). No date past this one is asked for.
 */
const LAST_DATE = Date.parse('2038-01-01T00:00:00Z');

export function immutableObjectRule(immutableDays: number, now: () => number = Date.now): (rel: string, kind: 'pack' | 'root') => Date | undefined {
  return (rel, kind) => {
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    if (rel === REPO_CONFIG || (rel.startsWith(`${REPO_CONFIG}.`) && rel.endsWith('.tmp'))) {
      return kind === 'pack' || rel === REPO_CONFIG ? new Date(Math.min(now() + 36_500 * DAY_MS, LAST_DATE)) : undefined;
    }
    if (!/^jobs\/[^/]+\/[^/]+$/.test(rel) || !/\.(vbk|vib|vrb)(\.tmp)?$/.test(name)) return undefined;
    const temporary = name.startsWith('.') && name.endsWith('.tmp');
    if (temporary && kind === 'root') return undefined;
    return new Date(now() + immutableDays * DAY_MS);
  };
}
