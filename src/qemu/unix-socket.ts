import { createConnection, type Socket } from 'node:net';
import { LifeboatError } from '../core/errors.js';

/**
 * Connects to a unix socket of a QEMU process (its monitor, a chardev) with a
 * deadline: a socket whose listener is stuck must fail its caller instead of
 * holding it. `what` names the socket in the errors ("the QEMU monitor").
 */
export function connectUnixSocket(path: string, timeoutMs: number, what: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = createConnection(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new LifeboatError('LFB_ERR_VM', `${what} ${path} did not accept a connection within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(new LifeboatError('LFB_ERR_VM', `cannot reach ${what} ${path}: ${e.message}`));
    });
  });
}
