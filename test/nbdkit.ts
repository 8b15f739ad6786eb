/** nbdkit as a real NBD server for tests: started in the foreground on loopback, ready once it accepts, alive when returned. */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './helpers.js';

/** nbdkit on 127.0.0.1:port with the given plugin, filters and parameters. */
export async function nbdkit(args: string[], port: number): Promise<ChildProcess> {
  const p = spawn('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), ...args], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  // Ready when it accepts a connection (probing by binding the port ourselves could steal it from nbdkit),
  // and still alive: an nbdkit that found the port taken exits, and the probe then reached whoever took it.
  for (let i = 0; i < 200; i++) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`nbdkit exited at start (port ${port} taken?)`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) {
      await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
      if (p.exitCode === null && p.signalCode === null) return p;
      throw new Error(`nbdkit exited at start (port ${port} taken?)`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  p.kill('SIGKILL');
  throw new Error('nbdkit did not start');
}

/** nbdkit on a free port: another test's server may take a port between freePort() and nbdkit's bind, so try a few. */
export async function nbdkitOnFreePort(args: string[]): Promise<{ proc: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { proc: await nbdkit(args, port), port };
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}
