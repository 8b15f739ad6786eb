import type { Server } from 'node:net';

export interface ListenTcpOptions {
  /**
   * Errors the server emits once listening (accept failures such as ENOBUFS,
   * ENOMEM or EPERM; EMFILE too where libuv's spare-descriptor trick does not
   * absorb it). Without a handler they are reported as process warnings: a
   * net.Server 'error' with no listener would end the process.
   */
  readonly onError?: (err: Error) => void;
}

/** Starts a TCP server listening; resolves with the port it got (port 0 = any free one). */
export async function listenTcp(server: Server, port: number, host: string, opts: ListenTcpOptions = {}): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const got = typeof a === 'object' && a !== null ? a.port : port;
  server.on('error', opts.onError ?? ((err) => process.emitWarning(`TCP listener on ${host}:${got}: ${err.message}`)));
  return got;
}
