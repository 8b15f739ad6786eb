/**
 * An empty disk added to a session (`instant add-disk`): zeros, every write
 * in its own copy-on-write overlay, described to hypervisors by its own
 * .vmdk in the session's datastore folder.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { CowOverlay, ZeroDisk } from '../blockdev/index.js';
import type { SessionRecord, SessionStore } from './session-store.js';
import type { Open } from './session-types.js';
import { vmdkDescriptor } from './vmware-files.js';

export interface BlankDisk {
  /** The session's record with the disk appended, already stored. */
  readonly rec: SessionRecord;
  readonly base: ZeroDisk;
  readonly ov: CowOverlay;
  /** Closes the overlay and removes its folder and descriptor (the record is the caller's to restore). */
  discard(): Promise<void>;
}

/**
 * Makes the disk's overlay and descriptor and stores the record that lists
 * it; a failure on the way leaves neither, nor a changed record. Appended
 * after the session's disks, so theirs keep their positions (and their NFS
 * handles stay valid).
 */
export async function makeBlankDisk(o: Open, store: SessionStore, size: number, diskName: string | undefined): Promise<BlankDisk> {
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--size must be a positive multiple of 512 bytes, not ${size}`);
  const index = Math.max(...o.rec.disks.map((d) => d.index), 999) + 1;
  const dn = diskName ?? `disk${index}`;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(dn) || o.rec.disks.some((d) => d.name === dn))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `disk name "${dn}" is invalid or taken in session ${o.rec.name}`);
  const overlayDir = join(o.rec.dir, `overlay-${index}`);
  const descriptor = join(o.rec.dir, 'files', `${dn}.vmdk`);
  // An overlay folder of a disk the record does not list is what an add that failed left: never reuse its data.
  await rm(overlayDir, { recursive: true, force: true });
  const base = new ZeroDisk(size);
  const ov = await CowOverlay.open(base, overlayDir);
  const discard = async (): Promise<void> => {
    await ov.close().catch(() => undefined);
    await rm(overlayDir, { recursive: true, force: true }).catch(() => undefined);
    await rm(descriptor, { force: true }).catch(() => undefined);
  };
  const rec: SessionRecord = { ...o.rec, disks: [...o.rec.disks, { index, name: dn, size, blank: true }] };
  try {
    await writeFile(descriptor, vmdkDescriptor(dn, size));
    await store.update(rec);
  } catch (err) {
    await discard();
    throw err;
  }
  return { rec, base, ov, discard };
}
