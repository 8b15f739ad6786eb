import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server as TcpServer } from 'node:net';
import { promisify } from 'node:util';
import { IPPROTO_TCP, IPPROTO_UDP, pmapRegister, type Mapping } from '../src/rpc/index.js';
import { MiB, randomBytes, repoWithPoint, rng, tempDir, withPort111 } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const NFS = 100003;
const MOUNT = 100005;

/** What the system portmapper on 111 lists for NFS and MOUNT, as `rpcinfo -p` prints it: "prog vers proto port". */
async function listed(): Promise<string[]> {
  const out = (await run('rpcinfo', ['-p', '127.0.0.1'])).stdout;
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/).slice(0, 4).join(' '))
    .filter((l) => l.startsWith(`${NFS} `) || l.startsWith(`${MOUNT} `))
    .sort();
}

const line = (m: Mapping): string => `${m.prog} ${m.vers} ${m.prot === IPPROTO_TCP ? 'tcp' : 'udp'} ${m.port}`;

/** Another NFS server on this machine (a kernel nfsd, say): listening sockets and its registrations. */
async function foreignServer(): Promise<{ mappings: Mapping[]; close(): Promise<void> }> {
  const nfs: TcpServer = createServer((c) => c.destroy());
  const mount: TcpServer = createServer((c) => c.destroy());
  await new Promise<void>((r) => nfs.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => mount.listen(0, '127.0.0.1', r));
  const mountPort = (mount.address() as { port: number }).port;
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(mountPort, '127.0.0.1', r));
  const mappings: Mapping[] = [
    { prog: NFS, vers: 3, prot: IPPROTO_TCP, port: (nfs.address() as { port: number }).port },
    { prog: MOUNT, vers: 3, prot: IPPROTO_TCP, port: mountPort },
    { prog: MOUNT, vers: 3, prot: IPPROTO_UDP, port: mountPort },
  ];
  for (const m of mappings) assert.ok(await pmapRegister(m), `rpcbind took ${line(m)}`);
  return {
    mappings,
    close: async () => {
      await new Promise((r) => nfs.close(r));
      await new Promise((r) => mount.close(r));
      await new Promise<void>((r) => udp.close(r));
    },
  };
}

/** Sockets on ports a killed server used: TCP on both, UDP on the MOUNT port. */
async function listenOn(nfsPort: number, mountPort: number): Promise<{ close(): Promise<void> }> {
  const tcp = [createServer(), createServer()];
  await new Promise<void>((r) => tcp[0]!.listen(nfsPort, '127.0.0.1', r));
  await new Promise<void>((r) => tcp[1]!.listen(mountPort, '127.0.0.1', r));
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(mountPort, '127.0.0.1', r));
  return {
    close: async () => {
      for (const t of tcp) await new Promise((r) => t.close(r));
      await new Promise<void>((r) => udp.close(r));
    },
  };
}

async function stop(s: Server): Promise<void> {
  const done = new Promise((r) => s.proc.on('close', r));
  s.proc.kill('SIGTERM');
  await done;
}

const ours = (s: Server): string[] => [`${NFS} 3 tcp ${s.nfsPort}`, `${MOUNT} 3 tcp ${s.mountPort}`, `${MOUNT} 3 udp ${s.mountPort}`].sort();

test('serve with a system rpcbind: removes only its own registrations, at start and at stop', { timeout: 3 * 60_000 }, () =>
  withPort111(async () => {
    const { dir, cleanup } = await tempDir();
    const rpcbind = spawn('rpcbind', ['-f'], { stdio: 'ignore' });
    let s: Server | undefined;
    let foreign: Awaited<ReturnType<typeof foreignServer>> | undefined;
    try {
      for (
        let i = 0;
        i < 50 &&
        !(await run('rpcinfo', ['-p', '127.0.0.1']).then(
          () => true,
          () => false,
        ));
        i++
      )
        await new Promise((r) => setTimeout(r, 100));
      const repo = await repoWithPoint(dir, randomBytes(rng(11), MiB));

      // 1. Another live NFS server is registered: serve keeps its mappings, registers nothing, and says how to reach it.
      foreign = await foreignServer();
      const theirs = foreign.mappings.map(line).sort();
      s = await startServer(repo);
      assert.match(s.log(), new RegExp(`on 111 kept another server's registration \\(NFS v3/tcp on port ${foreign.mappings[0]!.port}`));
      assert.match(s.log(), new RegExp(`nfsport=${s.nfsPort}, mountport=${s.mountPort}`));
      assert.deepEqual(await listed(), theirs, "another server's mappings survive serve's start");
      await stop(s);
      s = undefined;
      assert.deepEqual(await listed(), theirs, "another server's mappings survive serve's stop");

      // 2. Registrations nothing serves any more (a server gone without unregistering) are replaced.
      await foreign.close();
      foreign = undefined;
      s = await startServer(repo);
      assert.match(s.log(), /registered with the portmapper on 111/);
      assert.deepEqual(await listed(), ours(s));
      // …and a server killed with them registered leaves them recorded as its own: the next one replaces them,
      // even when its old ports have been taken by something else since.
      await kill9(s);
      const squatters = await listenOn(s.nfsPort, s.mountPort);
      try {
        s = await startServer(repo);
        assert.match(s.log(), /registered with the portmapper on 111/);
        assert.deepEqual(await listed(), ours(s));
      } finally {
        await squatters.close();
      }

      // 3. Someone replaced our NFS registration while we ran: at stop only MOUNT (still ours) is removed.
      const replacement: Mapping = { prog: NFS, vers: 3, prot: IPPROTO_TCP, port: 2049 };
      assert.ok(await pmapRegister(replacement, { unset: true }));
      assert.ok(await pmapRegister(replacement));
      await stop(s);
      s = undefined;
      assert.deepEqual(await listed(), [line(replacement)], 'the replacement is kept, our MOUNT mappings are gone');
    } finally {
      if (s) await kill9(s);
      await foreign?.close();
      rpcbind.kill('SIGKILL');
      await new Promise((r) => rpcbind.on('close', r));
      await cleanup();
    }
  }),
);
