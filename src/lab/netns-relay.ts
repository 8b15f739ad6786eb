/**
 * The inside half of a port forward into a lab, run in the lab's namespace:
 *
 *   ip netns exec <ns> node netns-relay.js <socket> <ip> <port> <maxConnections>
 *
 * Listens on a unix socket (a file-system object, which the host's namespace
 * reaches too) and relays each connection to <ip>:<port> on the lab's network,
 * which only a process inside the namespace can reach. Prints `listening` once
 * ready. Ends when its standard input closes: its owner stopped it or died
 * (even by SIGKILL), so a relay never outlives its forward. It imports only
 * node:* and socket-join.js: it runs as a script, without the rest of Lifeboat.
 */
import { rmSync, rmdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { basename, dirname } from 'node:path';
import { joinSockets } from './socket-join.js';

const [socketPath, ip, portText, maxText] = process.argv.slice(2);
if (socketPath === undefined || ip === undefined || !/^\d{1,5}$/.test(portText ?? '') || !/^\d{1,5}$/.test(maxText ?? '')) {
  process.stderr.write('usage: netns-relay.js <socket> <ip> <port> <maxConnections>\n');
  process.exit(2);
}

const open = new Set<Socket>();
const server = createServer({ allowHalfOpen: true }, (client) => {
  open.add(client);
  client.on('close', () => open.delete(client));
  const upstream = connect({ host: ip, port: Number(portText), allowHalfOpen: true });
  joinSockets(client, upstream);
});
server.maxConnections = Number(maxText);
server.on('error', (e) => {
  process.stderr.write(`netns-relay: ${socketPath}: ${e.message}\n`);
  process.exit(1);
});

rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.stdout.write('listening\n'));

const quit = (): void => {
  server.close();
  for (const s of open) s.destroy();
  rmSync(socketPath, { force: true });
  // A private folder made for this socket alone (see forwarder.ts) goes with it.
  if (basename(dirname(socketPath)).startsWith('lfb-fwd-')) {
    try {
      rmdirSync(dirname(socketPath));
    } catch {
      // not empty or already gone: not ours to force
    }
  }
  process.exit(0);
};
process.stdin.on('end', quit).on('error', quit).on('close', quit).resume();
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
