import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { removeDurable } from '../storage/index.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';

/**
 * A hold protects a restore point from retention while something uses it
 * (an instant-recovery session): jobs/<job>/holds/<holder>.json.
 */
export async function writeHold(jobDir: string, holder: string, pointId: string): Promise<void> {
  await mkdir(join(jobDir, 'holds'), { recursive: true });
  await writeCheckedJson(join(jobDir, 'holds', `${holder}.json`), { holder, pointId });
}

export async function removeHold(jobDir: string, holder: string): Promise<void> {
  await removeDurable(join(jobDir, 'holds', `${holder}.json`));
}

/** point id → holder. A hold that cannot be read holds everything ('*'): safety first. */
export async function heldPoints(jobDir: string): Promise<Map<string, string>> {
  const dir = join(jobDir, 'holds');
  const held = new Map<string, string>();
  for (const n of (await readdir(dir).catch(() => [] as string[])).filter((x) => x.endsWith('.json'))) {
    try {
      const h = await readCheckedJson<{ holder: string; pointId: string }>(join(dir, n), 'LFB_ERR_JOB_CORRUPT');
      held.set(h.pointId, h.holder);
    } catch {
      held.set('*', n);
    }
  }
  return held;
}
