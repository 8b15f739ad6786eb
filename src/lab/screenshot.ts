import { open, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { QmpClient } from '../qemu/qmp.js';
import type { LabTestResult } from './types.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface ScreenshotResult extends LabTestResult {
  /** The PNG's size, when one was written. */
  readonly width?: number;
  readonly height?: number;
}

/** Width and height from a PNG's header (signature, then the IHDR chunk), or undefined when `head` is not a PNG. */
export function pngSize(head: Buffer): { width: number; height: number } | undefined {
  if (head.length < 24 || !head.subarray(0, 8).equals(PNG_SIGNATURE) || head.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
}

/**
 * Saves the VM's screen as a PNG through QMP `screendump` (format png: QEMU
 * 7.2 built with libpng, as Debian's is). The session's monitor serves one
 * client at a time, so the connection lasts just this command. Name
 * "screenshot", the PNG's path as the detail when ok.
 */
export async function screenshot(qmpSocket: string, pngPath: string, timeoutMs: number): Promise<ScreenshotResult> {
  const start = performance.now();
  const path = resolve(pngPath);
  const result = (ok: boolean, detail: string, size?: { width: number; height: number }): ScreenshotResult => ({
    name: 'screenshot',
    ok,
    detail,
    ms: Math.round(performance.now() - start),
    ...size,
  });
  let qmp: QmpClient | undefined;
  try {
    // QEMU writes the file itself (its own working folder): hence the absolute path, and no stale file to mistake for this one.
    await rm(path, { force: true });
    qmp = await QmpClient.connect(qmpSocket, Math.max(1, timeoutMs));
    await qmp.execute('screendump', { filename: path, format: 'png' }, Math.max(1, timeoutMs - (performance.now() - start)));
  } catch (e) {
    return result(false, `no screenshot: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    qmp?.close();
  }
  try {
    const fh = await open(path, 'r');
    const head = Buffer.alloc(24);
    try {
      await fh.read(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
    const size = pngSize(head);
    if (!size) return result(false, `QEMU's screendump ${path} is not a PNG`);
    return result(true, path, size);
  } catch (e) {
    return result(false, `no screenshot: QEMU answered screendump but ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}
