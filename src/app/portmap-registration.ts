import { connect } from 'node:net';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { repositoryHostRoot } from '../repository/location.js';
import { MOUNT_PROGRAM, NFS_PROGRAM } from '../nfs/index.js';
import {
  IPPROTO_TCP,
  PMAP_PROG,
  PMAP_VERS,
  PMAPPROC_DUMP,
  RecordReader,
  XdrReader,
  encodeCall,
  pmapRegister,
  recordHeader,
  type Mapping,
} from '../rpc/index.js';

/**
 * Registration with a portmapper that is not ours (a system rpcbind holding
 * port 111). Lifeboat removes only what it registered: at start it replaces
 * NFS v3 / MOUNT v3 mappings that a previous run of this repository's server
 * left (recorded in instant/portmap.json) or that nothing on this machine
 * serves any more, and keeps any other (a kernel nfsd's, another server's),
 * registering nothing then; at stop it unregisters a program only while every
 * mapping of it is still one of ours.
 */
export interface PortmapRegistration {
  /** What `serve` says about the portmapper. */
  readonly mode: string;
  unregister(): Promise<void>;
}

interface RegistrationRecord {
  readonly portmapPort: number;
  readonly mappings: readonly Mapping[];
}

function recordFile(repoRoot: string): string {
  return join(repositoryHostRoot(repoRoot), 'instant', 'portmap.json');
}

const same = (a: Mapping, b: Mapping): boolean => a.prog === b.prog && a.vers === b.vers && a.prot === b.prot && a.port === b.port;

function describe(m: Mapping): string {
  const name = m.prog === NFS_PROGRAM ? 'NFS' : m.prog === MOUNT_PROGRAM ? 'MOUNT' : String(m.prog);
  return `${name} v${m.vers}/${m.prot === IPPROTO_TCP ? 'tcp' : 'udp'} on port ${m.port}`;
}

export async function registerWithPortmapper(opts: {
  readonly portmapPort: number;
  readonly repoRoot: string;
  /** Ours, all of version 3. */
  readonly mappings: readonly Mapping[];
  /** How clients reach this server without the portmapper. */
  readonly explicitPorts: string;
}): Promise<PortmapRegistration> {
  const port = opts.portmapPort;
  const programs = [...new Set(opts.mappings.map((m) => m.prog))];
  const unset = (prog: number): Promise<boolean> => pmapRegister({ prog, vers: 3, prot: IPPROTO_TCP, port: 0 }, { unset: true, port }).catch(() => false);
  const kept = (why: string): PortmapRegistration => ({
    mode: `on ${port} kept another server's registration${why} (clients reach this one with explicit ports: ${opts.explicitPorts})`,
    unregister: async () => undefined,
  });

  const present = await pmapDump(port)
    .then((all) => all.filter((m) => programs.includes(m.prog) && m.vers === 3))
    .catch(() => undefined);
  if (present === undefined)
    return {
      mode: `on ${port} does not list its mappings: nothing registered (clients reach this server with explicit ports: ${opts.explicitPorts})`,
      unregister: async () => undefined,
    };
  const recorded = await readRecord(opts.repoRoot, port);
  const foreign: Mapping[] = [];
  for (const m of present) {
    if (opts.mappings.some((o) => same(o, m)) || recorded.some((r) => same(r, m))) continue;
    if (!(await portServed(m.port, m.prot))) continue;
    foreign.push(m);
  }
  if (foreign.length > 0) return kept(` (${foreign.map(describe).join(', ')})`);

  // Only our leftovers and dead registrations are in the way: replace them.
  for (const prog of programs) if (present.some((m) => m.prog === prog)) await unset(prog);
  const registered: Mapping[] = [];
  let refused = false;
  for (const m of opts.mappings) {
    if (await pmapRegister(m, { port }).catch(() => false)) registered.push(m);
    else refused = true;
  }
  await writeRecord(opts.repoRoot, { portmapPort: port, mappings: registered });

  /** Unregisters each program whose mappings are all still ours (UNSET takes a whole program version). */
  const unregister = async (): Promise<void> => {
    const now = await pmapDump(port).catch(() => undefined);
    if (now === undefined) return; // cannot see what is there: the next start replaces what the record names
    for (const prog of programs) {
      const mine = now.filter((m) => m.prog === prog && m.vers === 3);
      if (mine.length > 0 && mine.every((m) => registered.some((r) => same(r, m)))) await unset(prog);
    }
    await unlink(recordFile(opts.repoRoot)).catch(() => undefined);
  };
  if (refused) {
    // Someone registered between our look and our SET: half a registration would send clients to two servers.
    await unregister();
    return kept('');
  }
  return { mode: `registered with the portmapper on ${port}`, unregister };
}

async function readRecord(repoRoot: string, portmapPort: number): Promise<readonly Mapping[]> {
  try {
    const r = JSON.parse(await readFile(recordFile(repoRoot), 'utf8')) as RegistrationRecord;
    return r.portmapPort === portmapPort && Array.isArray(r.mappings) ? r.mappings : [];
  } catch {
    return [];
  }
}

async function writeRecord(repoRoot: string, record: RegistrationRecord): Promise<void> {
  const path = recordFile(repoRoot);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(`${path}.tmp`, JSON.stringify(record));
  await rename(`${path}.tmp`, path);
}

/**
 * Whether any socket on this machine (this network namespace) serves `port`:
 * a TCP listener, or a bound UDP socket. Unknown (no /proc) counts as served,
 * so a mapping is never removed on a guess.
 */
export async function portServed(port: number, prot: number): Promise<boolean> {
  const tables = prot === IPPROTO_TCP ? ['tcp', 'tcp6'] : ['udp', 'udp6'];
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let readAny = false;
  for (const t of tables) {
    const text = await readFile(`/proc/net/${t}`, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    readAny = true;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st …; TCP_LISTEN is 0A, an unconnected UDP socket 07.
      if (f[1]?.endsWith(`:${hex}`) && (prot === IPPROTO_TCP ? f[3] === '0A' : true)) return true;
    }
  }
  return !readAny;
}

/** PMAPPROC_DUMP over TCP: every mapping the portmapper on `port` of this host holds. */
export function pmapDump(port: number, host = '127.0.0.1'): Promise<Mapping[]> {
  const call = encodeCall(0x2f00 + Math.floor(Math.random() * 1000), PMAP_PROG, PMAP_VERS, PMAPPROC_DUMP, Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    const reader = new RecordReader(1 << 20);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error('portmapper did not answer')), 5000);
    s.on('connect', () => s.write(Buffer.concat([recordHeader(call.length), call])));
    s.on('data', (d: Buffer) => {
      try {
        const [rec] = reader.feed(d);
        if (!rec) return;
        clearTimeout(timer);
        s.destroy();
        const r = new XdrReader(rec);
        r.u32(); // xid
        if (r.u32() !== 1 || r.u32() !== 0) throw new Error('portmapper refused the call');
        r.u32();
        r.opaque(400); // verifier
        if (r.u32() !== 0) throw new Error('portmapper did not run DUMP');
        const out: Mapping[] = [];
        while (r.bool()) out.push({ prog: r.u32(), vers: r.u32(), prot: r.u32(), port: r.u32() });
        resolve(out);
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    s.on('error', fail);
  });
}
