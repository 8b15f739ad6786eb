/**
 * Removes what killed labs left: for each record whose owner is dead, its
 * sessions (through the caller), dnsmasq, taps, namespace and record; then
 * namespaces `lfb-lab-*` that no record names and no live owner marks (a run
 * killed between making the namespace and recording it elsewhere, or a record
 * removed by hand). A lab whose owner still runs is never touched, so two
 * servers or test runs on one host leave each other's labs alone.
 */
import { isLifeboatError } from '../core/index.js';
import { dnsmasqFiles, removeDnsmasqFiles } from './dnsmasq.js';
import { isAlive, labRecordIds, labRecordPath, readLabRecord, removeLabRecord } from './lab-record.js';
import { linkAlias, linkNames, netnsList } from './netns.js';
import { labNetnsName, parseOwnerAlias, removeLab } from './network.js';

export interface RemoveLeftoverLabsOptions {
  /** Stops an instant session a dead lab started (the server's `instant stop`); its errors are reported, not thrown. */
  readonly stopSession?: (name: string) => Promise<void>;
}

export interface RemoveLeftoverLabsResult {
  /** The namespaces (`lfb-lab-<id>`) of the labs removed. */
  readonly removed: string[];
  /** What could not be done, one sentence each; a lab whose removal failed keeps its record for the next try. */
  readonly errors: string[];
}

const LAB_NETNS = /^lfb-lab-([0-9a-f]{1,6})$/;
/** How long a namespace without record or owner mark may be one being made right now (its owner marks it within milliseconds). */
const UNMARKED_GRACE_MS = 1000;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Taps of lab `id` still in the host's namespace (made, but not yet moved into the lab). */
const hostTaps = (id: string): Promise<string[]> => linkNames(new RegExp(`^lfb${id}t\\d+$`));

export async function removeLeftoverLabs(stateDir: string, opts: RemoveLeftoverLabsOptions = {}): Promise<RemoveLeftoverLabsResult> {
  const removed: string[] = [];
  const errors: string[] = [];
  const recorded = new Set<string>();
  for (const id of await labRecordIds(stateDir)) {
    recorded.add(labNetnsName(id));
    try {
      const rec = await readLabRecord(labRecordPath(stateDir, id));
      if (rec === undefined || isAlive(rec.owner)) continue;
      for (const name of rec.sessions) {
        if (!opts.stopSession) {
          errors.push(`lab ${id}: session ${name} was not stopped: no way to stop sessions was given`);
          continue;
        }
        try {
          await opts.stopSession(name);
        } catch (err) {
          // A session already gone is what we want; anything else is reported, and the lab is still removed.
          if (!isLifeboatError(err, 'LFB_ERR_SESSION_NOT_FOUND')) errors.push(`lab ${id}: stopping session ${name}: ${message(err)}`);
        }
      }
      // The name may have been taken since by a lab of a live owner (same id): leave that one alone.
      const now = parseOwnerAlias(await linkAlias('lo', rec.netns));
      const takenOver = now !== undefined && (now.pid !== rec.owner.pid || now.start !== rec.owner.start) && isAlive(now);
      if (!takenOver) await removeLab({ netns: rec.netns, taps: [...new Set([...rec.taps, ...(await hostTaps(id))])], dnsmasq: rec.dnsmasq });
      await removeDnsmasqFiles(dnsmasqFiles(stateDir, id));
      await removeLabRecord(stateDir, id);
      removed.push(rec.netns);
    } catch (err) {
      errors.push(`lab ${id}: ${message(err)}`);
    }
  }
  for (const ns of await netnsList()) {
    const id = LAB_NETNS.exec(ns)?.[1];
    if (id === undefined || recorded.has(ns)) continue;
    try {
      let owner = parseOwnerAlias(await linkAlias('lo', ns));
      if (owner === undefined) {
        await new Promise((r) => setTimeout(r, UNMARKED_GRACE_MS));
        owner = parseOwnerAlias(await linkAlias('lo', ns));
      }
      if (owner !== undefined && isAlive(owner)) continue;
      // Its record may have appeared meanwhile (a lab of this state folder being made): then it is not ours to judge here.
      if ((await labRecordIds(stateDir)).includes(id)) continue;
      await removeLab({ netns: ns, taps: await hostTaps(id), dnsmasq: undefined });
      removed.push(ns);
    } catch (err) {
      errors.push(`namespace ${ns}: ${message(err)}`);
    }
  }
  return { removed, errors };
}
