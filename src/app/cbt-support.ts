import { stat } from 'node:fs/promises';
import { LifeboatError } from '../core/errors.js';
import { isNbdUri, isQmpUri, sniffFormat } from '../source/index.js';

/**
 * Why a disk cannot have changed-block tracking, or undefined when it can.
 * Only qcow2 images (persistent dirty bitmaps, managed through a private
 * qemu-storage-daemon) and drives of running VMs over QMP can track writes.
 */
export async function whyNoCbt(disk: string, diskFormat: string | undefined): Promise<string | undefined> {
  if (isQmpUri(disk)) return undefined;
  if (isNbdUri(disk))
    return `${disk} is an NBD export: Lifeboat cannot manage its bitmaps (give the running VM's monitor with --qmp <socket> --drive <node-name>)`;
  const st = await stat(disk);
  if (!st.isFile()) return `${disk} is a block device: it has no dirty bitmaps`;
  const format = diskFormat ?? (await sniffFormat(disk));
  return format === 'qcow2' ? undefined : `${disk} is a ${format} image: only qcow2 images have dirty bitmaps`;
}

/** `--cbt` on a job whose disks cannot track changes: refused, rather than silently comparing hashes on every run. */
export async function refuseUntrackableCbt(disks: readonly string[], diskFormat: string | undefined): Promise<void> {
  const reasons: string[] = [];
  for (const d of disks) {
    const why = await whyNoCbt(d, diskFormat);
    if (why !== undefined) reasons.push(why);
  }
  if (reasons.length > 0)
    throw new LifeboatError(
      'LFB_ERR_CBT_UNSUPPORTED',
      `--cbt needs disks that can track changes (qcow2 images, or drives of a running VM over --qmp): ${reasons.join('; ')}. Leave out --cbt: runs then compare block hashes to find changes`,
      { details: { reasons } },
    );
}
