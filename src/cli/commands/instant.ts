import { repositoryRoot } from '../../repository/location.js';
import { resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { callControl, controlFile, type ControlInfo } from '../../app/control-api.js';
import type { CacheStats, SessionInfo } from '../../app/index.js';
import { LifeboatError } from '../../core/errors.js';
import { formatBytes, parseSize } from '../../core/units.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';
import { ProgressMeter } from '../progress.js';

export const instantStart: Command = {
  name: 'instant start',
  usage:
    'instant start <job> --repo <dir> --point <id|latest> [--name <session>] [--cache-dir <dir>] [--disks <n,…>] [--boot [--accel kvm|tcg] [--network none|isolated|<qemu -nic spec>]] [--json]',
  summary: 'publish a restore point on the NFS datastore and over NBD, without restoring it; --boot also runs the VM',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    point: { type: 'string', description: 'the restore point: an id (or unique prefix) or latest' },
    name: { type: 'string', description: 'session name', defaultText: '<job>-<point id>-<time>' },
    'cache-dir': {
      type: 'string',
      description: "absolute folder, outside the repository, for the session's write overlay",
      defaultText: "the repository's sessions folder",
    },
    disks: { type: 'string', description: 'publish only these disk numbers, comma-separated (e.g. 0,2)', defaultText: 'every disk' },
    boot: { type: 'boolean', description: 'also run the VM in QEMU on the published disks', defaultText: 'publish only' },
    accel: { type: 'string', description: 'with --boot: kvm or tcg', defaultText: 'kvm when usable, else tcg' },
    network: { type: 'string', description: 'with --boot: none, isolated, or a QEMU -nic spec', defaultText: 'none' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = repositoryRoot(requireString(ctx, 'repo'));
    const cacheDir = optionalString(ctx, 'cache-dir');
    const accel = optionalString(ctx, 'accel');
    if (accel !== undefined && accel !== 'kvm' && accel !== 'tcg')
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--accel must be kvm or tcg, not "${accel}"`);
    const network = optionalString(ctx, 'network');
    const boot = ctx.values['boot'] === true;
    if (!boot && (accel !== undefined || network !== undefined)) throw new LifeboatError('LFB_ERR_USAGE', '--accel and --network only go with --boot');
    const disksText = optionalString(ctx, 'disks');
    const disks =
      disksText === undefined
        ? undefined
        : disksText.split(',').map((x) => {
            if (!/^\d+$/.test(x.trim())) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--disks: "${x}" is not a disk number (e.g. --disks 0,2)`);
            return Number(x);
          });
    const s = await callControl<SessionInfo & { publishMs: number; host: string }>(repo, 'POST', '/sessions', {
      job: ctx.args[0],
      point: requireString(ctx, 'point'),
      name: optionalString(ctx, 'name'),
      cacheDir: cacheDir === undefined ? undefined : resolve(cacheDir),
      disks,
      boot: boot ? { accel, network } : undefined,
    });
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(s));
    ctx.out(`session ${s.name}: point ${s.pointId} of ${s.job} published in ${s.publishMs} ms`);
    const ports = await nfsPorts(repo);
    for (const d of s.disks) ctx.out(`  ${d.name}: ${d.nfsPath} (${formatBytes(d.size)})  ${nfsUrl(s.host, d.nfsPath, ports)}  nbd export ${d.nbdExport}`);
    if (ports && !portmapperListsThisServer(ports))
      ctx.out(
        `  the nfs:// URLs name the ports because no portmapper on 111 lists this server (libnfs tools accept them; QEMU 7.2's nfs driver does not and needs \`serve\` with the portmapper on 111)`,
      );
    ctx.out(`  VM: ${s.vmx}; writes go to ${s.dir}`);
    if (s.vm)
      ctx.out(
        `  booted: QEMU pid ${s.vm.pid}, ${s.vm.accel}, network ${s.vm.network}; serial console ${s.vm.serialLog}; QMP ${s.vm.qmpSocket}${s.vm.vncSocket ? `; screen (VNC) ${s.vm.vncSocket}` : ''}`,
      );
  },
};

export const instantList: Command = {
  name: 'instant list',
  usage: 'instant list --repo <dir> [--json]',
  summary: 'list instant-recovery sessions',
  positionals: [],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = repositoryRoot(requireString(ctx, 'repo'));
    const list = await callControl<SessionInfo[]>(repo, 'GET', '/sessions');
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(list, null, 2));
    if (list.length === 0) ctx.out('no sessions');
    for (const s of list) {
      ctx.out(`${s.name}  ${s.state}  job ${s.job} point ${s.pointId}  since ${s.createdAt}${s.problem ? `  (${s.problem})` : ''}`);
      for (const d of s.disks) ctx.out(`  ${d.nfsPath}  ${formatBytes(d.size)}, ${formatBytes(d.writtenBytes)} written`);
      if (s.vm)
        ctx.out(
          `  VM: ${s.vm.state}${s.vm.exit ? ` (${s.vm.exit})` : ''}, pid ${s.vm.pid}, ${s.vm.accel}${s.vm.accelNote ? ` (${s.vm.accelNote})` : ''}, serial ${s.vm.serialLog}`,
        );
      if (s.migration) ctx.out(`  migration to ${s.migration.to} (${s.migration.mode}, ${s.migration.format}): ${describeMigration(s.migration)}`);
    }
    for (const line of describeCaches(await callControl<CacheStats>(repo, 'GET', '/sessions/cache'))) ctx.out(line);
  },
};

export const instantStop: Command = {
  name: 'instant stop',
  usage: 'instant stop <session> --repo <dir> [--json]',
  summary: 'power off its VM, unpublish a session and discard its writes',
  positionals: ['session'],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    await callControl(repositoryRoot(requireString(ctx, 'repo')), 'DELETE', `/sessions/${encodeURIComponent(ctx.args[0]!)}`);
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ session: ctx.args[0], stopped: true, overlayDiscarded: true }));
    ctx.out(`stopped ${ctx.args[0]}; its overlay is discarded`);
  },
};

/** Two lines on the caches of decoded blocks: what they hold and how often reads found their block there. */
export function describeCaches(c: CacheStats): string[] {
  const rate = (hits: number, misses: number): string =>
    hits + misses === 0 ? 'no reads yet' : `${hits} hits, ${misses} misses (${Math.round((100 * hits) / (hits + misses))}% hits)`;
  const m = c.memory;
  const d = c.disk;
  return [
    `memory cache: ${formatBytes(m.usedBytes)} of ${formatBytes(m.budgetBytes)} (${m.blocks} blocks), ${rate(m.hits, m.misses)}`,
    d === null
      ? `disk cache: off (${c.diskOff ?? 'not opened'})`
      : `disk cache: ${formatBytes(d.usedBytes)} of ${formatBytes(d.budgetBytes)} (${d.blocks} blocks) in ${d.dir}, ${rate(d.hits, d.misses)}${d.damaged > 0 ? `, ${d.damaged} damaged files removed` : ''}`,
  ];
}

/** The server's NFS and MOUNT ports and portmapper mode, from its control file (undefined if it cannot be read). */
async function nfsPorts(repo: string): Promise<Pick<ControlInfo, 'nfsPort' | 'mountPort' | 'portmap'> | undefined> {
  try {
    return JSON.parse(await readFile(controlFile(repo), 'utf8')) as ControlInfo;
  } catch {
    return undefined;
  }
}

/** libnfs clients (and QEMU) look NFS and MOUNT up with the portmapper on 111; only one that lists this server's ports finds them. */
function portmapperListsThisServer(ports: Pick<ControlInfo, 'portmap'>): boolean {
  return /^(serving on|registered with the portmapper on) 111$/.test(ports.portmap);
}

/**
 * The nfs:// URL a client uses as printed: libnfs URL syntax, with
 * `?nfsport=N&mountport=M` when no portmapper on 111 can tell the client the
 * ports (libnfs then skips the portmapper).
 */
function nfsUrl(host: string, path: string, ports: Pick<ControlInfo, 'nfsPort' | 'mountPort' | 'portmap'> | undefined): string {
  const h = host.includes(':') ? `[${host}]` : host;
  const query = ports === undefined || portmapperListsThisServer(ports) ? '' : `?nfsport=${ports.nfsPort}&mountport=${ports.mountPort}`;
  return `nfs://${h}${path}${query}`;
}

type Migration = NonNullable<SessionInfo['migration']>;

function describeMigration(m: Migration): string {
  const total = m.disks.reduce((a, d) => a + d.size, 0);
  const done = m.disks.reduce((a, d) => a + d.copied, 0);
  const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
  return `${m.state} ${pct}% (${formatBytes(done)} of ${formatBytes(total)})${m.problem ? `: ${m.problem}` : ''}`;
}

export const instantMigrate: Command = {
  name: 'instant migrate',
  usage: 'instant migrate <session> --repo <dir> [--to <dir>] [--format raw|qcow2] [--rate <MB/s>] [--finish [--force]] [--no-wait] [--json]',
  summary: 'move a session to production storage: a booted VM keeps running (QEMU mirror); others are copied, then --finish once detached',
  positionals: ['session'],
  options: {
    repo: REPO_OPTION,
    to: { type: 'string', description: 'production folder the disks are copied to (needed to start; a resumed migration keeps its folder)' },
    format: { type: 'string', description: 'format of the migrated disks: raw or qcow2', defaultText: 'raw' },
    rate: { type: 'string', description: 'copy rate limit in MB/s', defaultText: 'unlimited' },
    finish: {
      type: 'boolean',
      description: 'complete the migration: refused while NFS or NBD clients use the session (they are listed); the session then takes no more writes',
      defaultText: 'copy and stay in step',
    },
    force: {
      type: 'boolean',
      description: 'with --finish: close the NBD connections and refuse every later write instead of refusing to finish',
      defaultText: 'refuse',
    },
    'no-wait': { type: 'boolean', description: 'return at once instead of showing progress until the copy is in step', defaultText: 'wait' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    if (ctx.values['force'] === true && ctx.values['finish'] !== true) throw new LifeboatError('LFB_ERR_USAGE', '--force goes with --finish');
    const repo = repositoryRoot(requireString(ctx, 'repo'));
    const name = ctx.args[0]!;
    const format = optionalString(ctx, 'format') ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--format must be raw or qcow2, not "${format}"`);
    const rateText = optionalString(ctx, 'rate');
    const rate = rateText === undefined ? undefined : Number(rateText);
    if (rate !== undefined && !(rate > 0)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--rate must be a positive number of MB/s, not "${rateText}"`);
    const to = optionalString(ctx, 'to');
    const path = `/sessions/${encodeURIComponent(name)}`;
    let s = await callControl<SessionInfo>(repo, 'POST', `${path}/migrate`, {
      to: to === undefined ? undefined : resolve(to),
      format,
      rate: rate === undefined ? undefined : rate * 1e6,
      finish: false,
    });
    if (ctx.values['no-wait'] !== true) {
      // Progress on the terminal until the copy is in step (or done, or failed).
      let last = '';
      const meter = new ProgressMeter();
      while (s.migration && s.migration.state === 'copying') {
        const m = s.migration;
        const line = `${m.state} ${meter.line(
          m.disks.reduce((a, d) => a + d.copied, 0),
          m.disks.reduce((a, d) => a + d.size, 0),
        )}`;
        if (line !== last) ctx.progress(`migrating ${name}: ${line}`);
        last = line;
        await new Promise((r) => setTimeout(r, 500));
        s = await callControl<SessionInfo>(repo, 'GET', path);
      }
    }
    if (ctx.values['finish'] === true)
      s = await callControl<SessionInfo>(repo, 'POST', `${path}/migrate`, { format, finish: true, force: ctx.values['force'] === true });
    const m = s.migration;
    if (!m) throw new LifeboatError('LFB_ERR_INTERNAL', 'the server reports no migration');
    if (m.state === 'failed')
      throw new LifeboatError('LFB_ERR_MIGRATION', `migration of ${name} failed: ${m.problem ?? 'unknown'}; run the same command again to resume`);
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ session: name, migration: m }));
    ctx.out(`migration of ${name} to ${m.to}: ${describeMigration(m)}`);
    for (const d of m.disks) ctx.out(`  ${d.name}: ${d.target}`);
    if (m.state === 'synced') ctx.out(`  in step; detach the VM from the datastore, then run \`lifeboat instant migrate ${name} --repo ${repo} --finish\``);
    if (m.state === 'done' && m.mode === 'mirror') ctx.out('  the VM runs on the production disks; `instant stop` releases the session and leaves it running');
  },
};

export const instantAddDisk: Command = {
  name: 'instant add-disk',
  usage: 'instant add-disk <session> --repo <dir> --size <bytes|K|M|G|T> [--name <disk>] [--json]',
  summary: 'add an empty disk to a session (hot-plugged into a booted VM)',
  positionals: ['session'],
  options: {
    repo: REPO_OPTION,
    size: { type: 'string', description: 'size of the new disk (bytes, or with K, M, G, T), a multiple of 512' },
    name: { type: 'string', description: 'disk name', defaultText: 'disk<n>' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const size = parseSize(requireString(ctx, 'size'), '--size');
    const s = await callControl<SessionInfo>(repositoryRoot(requireString(ctx, 'repo')), 'POST', `/sessions/${encodeURIComponent(ctx.args[0]!)}/disks`, {
      size,
      name: optionalString(ctx, 'name'),
    });
    const d = s.disks[s.disks.length - 1]!;
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ session: s.name, disk: d }));
    ctx.out(`session ${s.name}: added ${d.name} (${formatBytes(d.size)}): ${d.nfsPath}, nbd export ${d.nbdExport}`);
  },
};
