/** What `job create` and `job set` are given that names things on this host: disks and a VM configuration file, checked. */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { VmConfig } from '../format/root.js';
import { validateVmConfig } from '../methods/vm-config.js';
import { parseNbdUri } from '../nbd/index.js';
import { isNbdUri, isQmpUri, parseQmpUri, qmpUri } from '../source/index.js';

/** The disks of a job as stored: paths made absolute and checked, a running VM's drives as qmp:///<monitor socket>?drive=<node-name>. */
export async function resolveJobDisks(given: readonly string[], qmp: string | undefined, drives: readonly string[] | undefined): Promise<string[]> {
  const vmDrives = qmp === undefined ? [] : (drives ?? []).map((d) => qmpUri(resolve(qmp), d));
  const disks = [...given.map((d) => (isNbdUri(d) || isQmpUri(d) ? d : resolve(d))), ...vmDrives];
  for (const d of disks) {
    if (isNbdUri(d)) parseNbdUri(d);
    else if (isQmpUri(d)) parseQmpUri(d);
    else
      await stat(d).catch((err: NodeJS.ErrnoException) => {
        throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `disk ${d} cannot be opened: ${err.code ?? String(err)}; check the path given with --disk`, {
          details: { disk: d },
        });
      });
  }
  return disks;
}

export async function readVmConfig(file: string): Promise<Partial<VmConfig>> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--vm-config ${file}: ${(err as Error).message}`);
  }
  return validateVmConfig(doc, file);
}
