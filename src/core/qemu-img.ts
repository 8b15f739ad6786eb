import { spawn } from 'node:child_process';
import { LifeboatError } from './errors.js';

/**
 * Runs `qemu-img` (qcow2 restores, migrations, image sources and their
 * bitmaps) and returns what it printed. `purpose` finishes the sentence of
 * the missing-tool error: "<purpose> needs qemu-img".
 */
export function qemuImg(args: string[], purpose: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('qemu-img', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new LifeboatError('LFB_ERR_TOOL_MISSING', `${purpose} needs qemu-img: install the qemu-utils package (apt-get install qemu-utils)`)
          : e,
      ),
    );
    p.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `qemu-img ${args[0]} failed (exit ${code}): ${err.trim()}`)),
    );
  });
}
