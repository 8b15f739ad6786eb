/**
 * Helpers for the virtual lab's tests and benchmark: the lab's guest images (test/fixtures/make-lab-image.sh),
 * booting one straight from its local file (the baseline that booting from the backup is compared with),
 * a throw-away network namespace with a bridge and dnsmasq that does not depend on src/lab, listeners
 * outside the lab for the isolation probe (the guest-agent ping is in lab-qga.ts). Everything they make is
 * removed in every outcome.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const MAKE_LAB_IMAGE = fileURLToPath(new URL('../../test/fixtures/make-lab-image.sh', import.meta.url));

export interface LabImageOptions {
  readonly damaged?: boolean;
  /** "ip:port" targets the guest tries to reach after LAB-UP (see make-lab-image.sh). */
  readonly probe?: readonly string[];
}

// Builds sharing one kernel cache run one after the other (the first one downloads it).
const building = new Map<string, Promise<unknown>>();

/** Builds one lab image at `out`, with the kernel cached in `workDir`; returns its path. */
export async function buildLabImage(out: string, workDir: string, opts: LabImageOptions = {}): Promise<string> {
  const args = [MAKE_LAB_IMAGE, out, workDir];
  if (opts.damaged) args.push('--damaged');
  if (opts.probe?.length) args.push('--probe', opts.probe.join(' '));
  const previous = building.get(workDir) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(() => run('bash', args, { maxBuffer: 1 << 24, timeout: 10 * 60_000 }));
  building.set(workDir, mine);
  const { stdout } = await mine;
  return stdout.trim().split('\n').pop()!;
}

const images = new Map<string, Promise<{ good: string; damaged: string }>>();

/** The good and the damaged lab image in `dir`, built once per process (and reused if already there). */
export function buildLabImages(dir: string): Promise<{ good: string; damaged: string }> {
  let p = images.get(dir);
  if (!p) {
    p = (async () => {
      const work = join(dir, 'lab-build');
      const good = join(dir, 'lab-good.img');
      const damaged = join(dir, 'lab-damaged.img');
      if (!existsSync(good)) await buildLabImage(good, work);
      if (!existsSync(damaged)) await buildLabImage(damaged, work, { damaged: true });
      return { good, damaged };
    })();
    images.set(dir, p);
    p.catch(() => images.delete(dir));
  }
  return p;
}

export interface LocalBootOptions {
  readonly image: string;
  /** The namespace whose bridge the tap joins once QEMU has opened it. */
  readonly netns: string;
  /** A tap in the host's namespace (`ip tuntap add dev <tap> mode tap`), opened by QEMU by name. */
  readonly tap: string;
  readonly mac: string;
  readonly accel: 'tcg';
  /** This VM's own folder: serial.log and qga.sock. */
  readonly dir: string;
  /** Bridge inside `netns`; lfbbr0 by default. */
  readonly bridge?: string;
  /** Moves the opened tap into the lab instead of the default (`ip link set … netns`, then onto the bridge). */
  readonly attach?: (tap: string) => Promise<void>;
}

export interface LocalVm {
  readonly serialLog: string;
  readonly qgaSocket: string;
  readonly pid: number;
  /** performance.now() when QEMU was spawned. */
  readonly startedAt: number;
  /** The serial console so far. */
  serial(): string;
  /** Polls the serial console for `re` until `ms` pass; the match, or undefined. */
  waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray | undefined>;
  /** Ends QEMU (TERM, then KILL after 5 s); safe to call twice. */
  stop(): Promise<void>;
}

/** Boots `image` from the local file with QEMU (TCG, 256 MiB, serial to a file, a guest-agent channel, a NIC on `tap`). */
export async function bootLocal(opts: LocalBootOptions): Promise<LocalVm> {
  await mkdir(opts.dir, { recursive: true });
  const serialLog = join(opts.dir, 'serial.log');
  const qgaSocket = join(opts.dir, 'qga.sock');
  await rm(serialLog, { force: true });
  await rm(qgaSocket, { force: true });
  const args = [
    ...['-accel', opts.accel, '-m', '256', '-smp', '1', '-display', 'none', '-monitor', 'none'],
    ...['-serial', `file:${serialLog}`],
    // Read-only: the guest never writes, and several VMs may boot one image (QEMU's lock is then shared).
    ...['-drive', `file=${opts.image},format=raw,if=virtio,readonly=on`],
    ...['-chardev', `socket,id=lfb-qga,path=${qgaSocket},server=on,wait=off`],
    ...['-device', 'virtio-serial-pci', '-device', 'virtserialport,chardev=lfb-qga,name=org.qemu.guest_agent.0'],
    ...['-nic', `tap,ifname=${opts.tap},script=no,downscript=no,model=virtio-net-pci,mac=${opts.mac}`],
  ];
  const startedAt = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => qemu.once('close', () => r()));
  const stop = async (): Promise<void> => {
    if (qemu.exitCode !== null || qemu.signalCode !== null) return;
    qemu.kill('SIGTERM');
    const killer = setTimeout(() => qemu.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  };
  try {
    await waitForTapOpened(qemu, opts.tap, () => stderr);
    if (opts.attach) await opts.attach(opts.tap);
    else {
      await ip(['link', 'set', opts.tap, 'netns', opts.netns]);
      await ip(['-n', opts.netns, 'link', 'set', opts.tap, 'master', opts.bridge ?? 'lfbbr0', 'up']);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const serial = (): string => (existsSync(serialLog) ? readFileSync(serialLog, 'utf8') : '');
  return {
    serialLog,
    qgaSocket,
    pid: qemu.pid!,
    startedAt,
    serial,
    async waitFor(re, ms) {
      const deadline = performance.now() + ms;
      for (;;) {
        const m = serial().match(re);
        if (m) return m;
        if (performance.now() > deadline || qemu.exitCode !== null || qemu.signalCode !== null) return undefined;
        await sleep(100);
      }
    },
    stop,
  };
}

// QEMU has the tap when one of its descriptors is the tun device attached to that name (fdinfo says "iff: <tap>").
async function waitForTapOpened(qemu: ChildProcess, tap: string, stderr: () => string): Promise<void> {
  const deadline = performance.now() + 15_000;
  for (;;) {
    if (qemu.exitCode !== null || qemu.signalCode !== null) throw new Error(`QEMU ended before opening ${tap}: ${stderr()}`);
    const fds = await readdir(`/proc/${qemu.pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${qemu.pid}/fd/${fd}`).catch(() => '');
      if (target !== '/dev/net/tun') continue;
      const info = await readFile(`/proc/${qemu.pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      if (new RegExp(`^iff:\\s+${tap}$`, 'm').test(info)) return;
    }
    if (performance.now() > deadline) throw new Error(`QEMU did not open ${tap} within 15 s: ${stderr()}`);
    await sleep(50);
  }
}

export interface TestHost {
  readonly name: string;
  readonly mac: string;
  readonly ip: string;
}

export interface TestNetns {
  readonly netns: string;
  readonly bridge: 'lfbbr0';
  readonly gateway: '10.99.0.1';
  /** The namespace's scratch folder (dnsmasq's files); removed at the end. */
  readonly dir: string;
  /** A new tap in the host's namespace, removed at the end wherever it then is. */
  createTap(): Promise<string>;
  /** Runs a program inside the namespace with a deadline (default 20 s); never throws for a non-zero exit. */
  exec(file: string, args: readonly string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** dnsmasq's log so far. */
  dnsmasqLog(): string;
}

/**
 * Runs `fn` with a throw-away namespace `lfbt-<hex>`: bridge lfbbr0 at 10.99.0.1/24, no other interface and no
 * route out, dnsmasq giving each host its address and name by MAC (DHCP and DNS). Removed in every outcome.
 */
export async function withNetns<T>(hosts: readonly TestHost[], fn: (ns: TestNetns) => Promise<T>): Promise<T> {
  const id = randomBytes(2).toString('hex');
  const netns = `lfbt-${id}`;
  const dir = await mkdtemp(join(tmpdir(), 'lfb-netns-'));
  const taps: string[] = [];
  let dnsmasq: ChildProcess | undefined;
  const log = join(dir, 'dnsmasq.log');
  try {
    await ip(['netns', 'add', netns]);
    await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', netns, 'link', 'add', 'lfbbr0', 'type', 'bridge']);
    await ip(['-n', netns, 'addr', 'add', '10.99.0.1/24', 'dev', 'lfbbr0']);
    await ip(['-n', netns, 'link', 'set', 'lfbbr0', 'up']);
    const hostArgs = hosts.flatMap((h) => [`--dhcp-host=${h.mac},${h.ip},${h.name}`, `--host-record=${h.name},${h.ip}`]);
    dnsmasq = spawn(
      'ip',
      [
        ...['netns', 'exec', netns, '/usr/sbin/dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--user=root'],
        ...['--no-resolv', '--no-hosts', '--bind-interfaces', '--interface=lfbbr0', '--dhcp-authoritative', '--log-dhcp'],
        ...['--dhcp-range=10.99.0.0,static,255.255.255.0,1h', '--domain=lab', '--local=/lab/'],
        ...[`--dhcp-leasefile=${join(dir, 'leases')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`, `--log-facility=${log}`],
        ...hostArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let dnsmasqErr = '';
    dnsmasq.stderr!.on('data', (d: Buffer) => (dnsmasqErr += d.toString()));
    const started = performance.now();
    while (!(existsSync(log) && readFileSync(log, 'utf8').includes('started'))) {
      if (dnsmasq.exitCode !== null) throw new Error(`dnsmasq ended: ${dnsmasqErr}`);
      if (performance.now() - started > 10_000) throw new Error(`dnsmasq did not start within 10 s: ${dnsmasqErr}`);
      await sleep(50);
    }
    return await fn({
      netns,
      bridge: 'lfbbr0',
      gateway: '10.99.0.1',
      dir,
      async createTap() {
        const tap = `lfbt${id}t${taps.length}`;
        taps.push(tap);
        await ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
        return tap;
      },
      exec: (file, args, timeoutMs = 20_000) => execIn(netns, file, args, timeoutMs),
      dnsmasqLog: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''),
    });
  } finally {
    if (dnsmasq && dnsmasq.exitCode === null) {
      const gone = new Promise((r) => dnsmasq!.once('close', r));
      dnsmasq.kill('SIGKILL');
      await gone;
    }
    for (const tap of taps) {
      await ip(['link', 'del', tap]).catch(() => undefined);
      await ip(['-n', netns, 'link', 'del', tap]).catch(() => undefined);
    }
    await ip(['netns', 'del', netns]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

async function execIn(netns: string, file: string, args: readonly string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('ip', ['netns', 'exec', netns, file, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; signal?: string | null; stdout?: string; stderr?: string };
    const why = e.signal ? `ended by ${e.signal}${e.signal === 'SIGKILL' ? ` (deadline ${timeoutMs} ms)` : ''}` : '';
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: `${e.stderr ?? String(err)}${why}` };
  }
}

export interface CountingListener {
  readonly port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/** A TCP listener in the host's namespace on `host` (0.0.0.0 by default), port 0, counting connections. */
export async function listenOnHost(host = '0.0.0.0'): Promise<CountingListener> {
  let count = 0;
  const server = createServer((s) => {
    count++;
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connections: () => count,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const LISTENER = `const s=require('net').createServer(c=>{process.stdout.write('C\\n');c.destroy()});s.listen(0,process.argv[1],()=>process.stdout.write('P'+s.address().port+'\\n'));`;

/** A TCP listener inside `netns` on `host`, port 0, counting connections (a node child run with ip netns exec). */
export async function listenInNetns(netns: string, host: string): Promise<CountingListener> {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', LISTENER, host], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const close = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  const started = performance.now();
  let m: RegExpMatchArray | null;
  while (!(m = out.match(/^P(\d+)$/m))) {
    if (child.exitCode !== null || performance.now() - started > 10_000) {
      await close();
      throw new Error(`no listener in ${netns} on ${host}: ${err}`);
    }
    await sleep(20);
  }
  return { port: Number(m[1]), connections: () => (out.match(/^C$/gm) ?? []).length, close };
}

/**
 * HTTP GET from inside `netns` (node's fetch run with ip netns exec: busybox-static's wget segfaults there).
 * Resolves with the status and body, or rejects with why the request failed.
 */
export async function httpGetIn(netns: string, url: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  const script = `fetch(process.argv[1],{signal:AbortSignal.timeout(${timeoutMs})}).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>{console.error(String(e.cause??e));process.exit(1)})`;
  const r = await execIn(netns, process.execPath, ['-e', script, url], timeoutMs + 5000);
  if (r.code !== 0) throw new Error(`GET ${url} in ${netns} failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as { status: number; body: string };
}

/** An IPv4 address of the interface of the host's default route (the host's "external" address). */
export async function hostExternalAddress(): Promise<string> {
  const routes = JSON.parse((await run('ip', ['-j', '-4', 'route', 'show', 'default'], { timeout: 10_000 })).stdout) as { dev?: string }[];
  const dev = routes.find((r) => r.dev)?.dev;
  if (!dev) throw new Error('the host has no default route');
  const addrs = JSON.parse((await run('ip', ['-j', '-4', 'addr', 'show', 'dev', dev], { timeout: 10_000 })).stdout) as { addr_info: { local: string }[] }[];
  const a = addrs[0]?.addr_info[0]?.local;
  if (!a) throw new Error(`${dev} has no IPv4 address`);
  return a;
}

/**
 * Runs `fn` with another namespace reachable from the host (a veth pair in 10.98.<n>.0/30, the far end at
 * .2): a place outside the lab that the host can reach, for the isolation probe. Removed in every outcome.
 */
export async function withReachableNetns<T>(fn: (o: { netns: string; ip: string }) => Promise<T>): Promise<T> {
  const id = randomBytes(2).toString('hex');
  const netns = `lfbt-${id}-o`;
  const near = `lfbt${id}o0`;
  const n = 1 + (randomBytes(1)[0]! % 250);
  try {
    await ip(['netns', 'add', netns]);
    await ip(['link', 'add', near, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await ip(['addr', 'add', `10.98.${n}.1/30`, 'dev', near]);
    await ip(['link', 'set', near, 'up']);
    await ip(['-n', netns, 'addr', 'add', `10.98.${n}.2/30`, 'dev', 'eth0']);
    await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    return await fn({ netns, ip: `10.98.${n}.2` });
  } finally {
    await ip(['link', 'del', near]).catch(() => undefined);
    await ip(['netns', 'del', netns]).catch(() => undefined);
  }
}

/** Whether `pid` runs (alive and not a zombie). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!);
  } catch {
    return false;
  }
}

async function ip(args: string[]): Promise<void> {
  await run('ip', args, { timeout: 20_000 });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The namespaces of the labs of these ids that exist now. */
export async function labNamespaces(ids: ReadonlySet<string>): Promise<string[]> {
  const out = (await run('ip', ['netns', 'list'], { timeout: 10_000 })).stdout;
  return [...ids].map((id) => `lfb-lab-${id}`).filter((ns) => new RegExp(`^${ns}\\b`, 'm').test(out));
}

/**
 * Everything a SureBackup lab of these ids could leave: its namespace, taps, QEMU processes, the server's `sb-`
 * sessions and their folders, and the lab records. Only these ids' namespaces, taps and QEMU processes: other
 * tests may boot labs on the machine at the same time.
 */
export async function labLeftovers(o: { repo: string; ids: ReadonlySet<string>; sessionNames: () => Promise<string[]> }): Promise<string[]> {
  const left = await labNamespaces(o.ids);
  const links = (await run('ip', ['-o', 'link', 'show'], { timeout: 10_000 })).stdout;
  for (const id of o.ids) for (const m of links.matchAll(new RegExp(`^\\d+: (lfb${id}t\\d+)`, 'gm'))) left.push(`tap ${m[1]}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('qemu-system') && [...o.ids].some((id) => cmd.includes(`sb-${id}-`))) left.push(`QEMU pid ${pid}`);
  }
  for (const s of await o.sessionNames()) if (s.startsWith('sb-')) left.push(`session ${s}`);
  for (const d of [join(o.repo, 'cache', 'instant'), join(o.repo, 'instant', 'sessions')])
    for (const e of await readdir(d).catch(() => [] as string[])) if (e.startsWith('sb-')) left.push(`${d}/${e}`);
  for (const e of await readdir(join(o.repo, 'surebackup', 'labs')).catch(() => [] as string[])) left.push(`record ${e}`);
  return left;
}
