import type { Server } from 'node:net';

/** Starts a TCP server listening; resolves with the port it got (port 0 = any free one). */
export async function listenTcp(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : port;
}
