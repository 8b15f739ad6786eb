import { spawn } from 'node:child_process';
import { LifeboatError } from './errors.js';

/**
 * Runs `qemu-img` (qcow2 restores, migrations). `purpose` finishes the
 * sentence of the missing-tool error: "<purpose> needs qemu-img".
 */
export function qemuImg(args: string[], purpose: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new LifeboatError('LFB_ERR_TOOL_MISSING', `${purpose} needs qemu-img: install the qemu-utils package (apt-get install qemu-utils)`) : e),
    );
    p.on('close', (code) => (code === 0 ? resolve() : reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `qemu-img ${args[0]} failed (exit ${code}): ${err.trim()}`))));
  });
}
