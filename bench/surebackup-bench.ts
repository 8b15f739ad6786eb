/**
 * The SureBackup benchmark: the overhead of booting from the backup.
 *
 *   surebackup: wall time of `lifeboat surebackup run --vm web --vm db
 *     --http <job>:http://{ip}/ --accel tcg --json` against a running serve,
 *     from the command's start to its report: the lab made, both VMs booted
 *     as instant sessions from NBD exports of their points (the lab images
 *     of test/lab-harness.ts, backed up as two jobs), heartbeat (guest
 *     agent), ping and HTTP from inside the lab, each point verified while
 *     its VM boots, a screenshot each, everything removed;
 *   local: the same two guests booted from their local image files
 *     (bootLocal, TCG, 256 MiB) in a throw-away namespace with the same
 *     bridge and dnsmasq, to the same heartbeat, ping and HTTP (the lab's own
 *     probes), then stopped and the namespace removed.
 * Each is run BENCH_ROUNDS times (default 3), alternating; medians and the
 * ratio surebackup/local are printed (target ≤ 1.3x).
 *
 *   npm run bench:surebackup   (root: namespaces and taps)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { heartbeat, httpProbe, pingProbe, type LabExec } from '../src/lab/probes.js';
import { planLabHosts } from '../src/lab/lab-plan.js';
import { BIN } from '../test/helpers.js';
import { bootLocal, buildLabImages, withNetns, type LocalVm } from '../test/lab-harness.js';
import { kill9, startServer } from '../test/server-helpers.js';

const run = promisify(execFile);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const JOBS = ['web', 'db'];

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function lifeboat(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { maxBuffer: 1 << 24, timeout: 10 * 60_000 });
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

async function timeSureBackup(repo: string, reportDir: string): Promise<number> {
  const started = performance.now();
  const r = await lifeboat([
    ...['surebackup', 'run', '--repo', repo, '--accel', 'tcg', '--json', '--report-dir', reportDir],
    ...JOBS.flatMap((j) => ['--vm', j, '--http', `${j}:http://{ip}/`]),
  ]);
  const s = (performance.now() - started) / 1000;
  if (r.code !== 0) throw new Error(`surebackup run failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  return s;
}

async function timeLocal(image: string, dir: string): Promise<number> {
  const started = performance.now();
  const hosts = planLabHosts('b0b', '10.99.0.0/24', JOBS);
  await withNetns(hosts, async (ns) => {
    const exec: LabExec = (file, args, opts) => ns.exec(file, args, opts?.timeoutMs);
    const vms: LocalVm[] = [];
    try {
      for (const [i, h] of hosts.entries())
        vms.push(await bootLocal({ image, netns: ns.netns, tap: await ns.createTap(), mac: h.mac, accel: 'tcg', dir: join(dir, `vm${i}`) }));
      await Promise.all(
        vms.map(async (vm, i) => {
          const ip = hosts[i]!.ip;
          for (const t of [
            await heartbeat({ qgaSocket: vm.qgaSocket, serialLog: vm.serialLog, timeoutMs: 180_000 }),
            await pingProbe(exec, ip, 60_000),
            await httpProbe(exec, `http://${ip}/`, 30_000),
          ])
            if (!t.ok) throw new Error(`local boot of ${hosts[i]!.name}: ${t.name} failed: ${t.detail}`);
        }),
      );
    } finally {
      await Promise.all(vms.map((v) => v.stop()));
    }
  });
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-bench-surebackup-'));
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const { good } = await buildLabImages(dir);
    const repo = join(dir, 'repo');
    await writeFile(join(dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
    for (const args of [
      ['repo', 'init', repo],
      ...JOBS.flatMap((j) => [
        ['job', 'create', j, '--repo', repo, '--disk', good, '--vm-config', join(dir, 'vm.json')],
        ['backup', j, '--repo', repo],
      ]),
    ]) {
      const r = await lifeboat(args);
      if (r.code !== 0) throw new Error(`lifeboat ${args.join(' ')}: ${r.stderr}`);
    }
    server = await startServer(repo, ['--no-portmap']);
    const sb: number[] = [];
    const local: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await mkdir(join(dir, `local-${i}`), { recursive: true });
      local.push(await timeLocal(good, join(dir, `local-${i}`)));
      sb.push(await timeSureBackup(repo, join(dir, `report-${i}`)));
      console.log(`round ${i + 1}: surebackup ${sb[i]!.toFixed(1)} s, local ${local[i]!.toFixed(1)} s`);
    }
    const s = median(sb);
    const l = median(local);
    console.log(
      `two-VM group under TCG, median of ${ROUNDS}: surebackup run to report ${s.toFixed(1)} s; local files to heartbeat+ping+http ${l.toFixed(1)} s; ratio ${(s / l).toFixed(2)}x (target ≤ 1.3x)`,
    );
  } finally {
    if (server) await kill9(server);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
