import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, cli, tempDir, until } from './helpers.js';
import {
  buildLabImage,
  buildLabImages,
  hostExternalAddress,
  labLeftovers,
  labNamespaces,
  listenInNetns,
  listenOnHost,
  withReachableNetns,
} from './lab-harness.js';
import { kill9, startServer, type Server } from './server-helpers.js';
import { removeLeftoverLabs } from '../src/lab/leftovers.js';
import { adminToken } from './service-e2e-helpers.js';

const run = promisify(execFile);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface JsonReport {
  ok: boolean;
  id: string;
  startedAt: string;
  endedAt: string;
  reportDir: string;
  vms: {
    note?: string;
    job: string;
    point: string;
    name: string;
    ip: string;
    booted: boolean;
    seconds: number;
    screenshot?: string;
    tests: { name: string; ok: boolean; detail: string }[];
  }[];
}

/** One repository, one serve and the lab images for the whole file. */
const ctx: { dir: string; repo: string; build: string; server?: Server; cleanup?: () => Promise<void> } = { dir: '', repo: '', build: '' };

async function backUp(job: string, image: string): Promise<void> {
  const created = await cli(['job', 'create', job, '--repo', ctx.repo, '--disk', image, '--vm-config', join(ctx.dir, 'vm.json')]);
  assert.equal(created.code, 0, created.stderr);
  const b = await cli(['backup', job, '--repo', ctx.repo]);
  assert.equal(b.code, 0, b.stderr);
}

const surebackup = (args: string[]): ReturnType<typeof cli> =>
  cli(['surebackup', 'run', '--repo', ctx.repo, '--accel', 'tcg', '--json', ...args], {}, undefined, 8 * 60_000);

before(async () => {
  const t = await tempDir('lifeboat-surebackup-');
  ctx.dir = t.dir;
  ctx.cleanup = t.cleanup;
  ctx.repo = join(t.dir, 'repo');
  ctx.build = join(t.dir, 'lab-build'); // buildLabImages' kernel cache, shared with the probe image
  await writeFile(join(t.dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }) /* disks default to virtio */);
  const init = await cli(['repo', 'init', ctx.repo]);
  assert.equal(init.code, 0, init.stderr);
  const { good, damaged } = await buildLabImages(ctx.dir);
  await backUp('web', good);
  await backUp('db', good);
  await backUp('broken', damaged);
  ctx.server = await startServer(ctx.repo, ['--no-portmap']);
});

after(async () => {
  try {
    // Whatever a failed case left: its sessions, then the server, then the files.
    if (ctx.server) {
      for (const name of await sessionNames().catch(() => [])) await cli(['instant', 'stop', name, '--repo', ctx.repo]);
      await kill9(ctx.server);
    }
    // The runs are dead by now: removeLeftoverLabs takes their labs whole (dnsmasq, taps, namespace, records);
    // deleting only the namespaces' names would leave dnsmasq running in a namespace nobody can name.
    await removeLeftoverLabs(join(ctx.repo, 'surebackup', 'labs')).catch(() => undefined);
    for (const ns of await labNamespaces(ids)) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  } finally {
    await ctx.cleanup?.();
  }
});

async function sessionNames(): Promise<string[]> {
  const r = await cli(['instant', 'list', '--repo', ctx.repo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name);
}

/** The lab ids this file's runs used (from their report folders and the records of killed ones). */
const ids = new Set<string>();

/** Everything this file's labs could leave (test/lab-harness.ts). */
const leftovers = (): Promise<string[]> => labLeftovers({ repo: ctx.repo, ids, sessionNames });

/** A two-VM run (web, db) as a child of its own, to be killed or signalled while its VMs boot. */
function spawnRun(): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, 'surebackup', 'run', '--repo', ctx.repo, '--accel', 'tcg', '--vm', 'web', '--vm', 'db', '--timeout', '180'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exited, stderr: () => stderr };
}

/** Waits until the run started both VMs (two sb- sessions of the server), and notes their lab for leftovers(). */
async function bothVmsStarted(): Promise<void> {
  const names = await until(
    'the run to start both VMs',
    async () => {
      const n = (await sessionNames()).filter((s) => s.startsWith('sb-'));
      return n.length === 2 ? n : undefined;
    },
    120_000,
    250,
  );
  for (const n of names) ids.add(/^sb-([0-9a-f]+)-/.exec(n)![1]!);
}

function parse(stdout: string): JsonReport {
  const r = JSON.parse(stdout) as JsonReport;
  // The lab's id ends the report's id (the report id may carry the start time before it).
  ids.add(/[0-9a-f]{1,6}$/.exec(r.id)![0]);
  return r;
}

test(
  'a two-VM group booted from the backup passes every test: heartbeat, ping, tcp:80, http, a script, verify, screenshot',
  { timeout: 8 * 60_000 },
  async (t) => {
    const script = join(ctx.dir, 'check.sh');
    // Runs inside the lab: the page names the VM, so VM_NAME and VM_IP reach the script and the guest took its planned name by DHCP.
    await writeFile(
      script,
      '#!/bin/sh\nset -e\ncase "$VM_IP" in 10.99.0.1[0-9]) ;; *) echo "unexpected VM_IP $VM_IP"; exit 1 ;; esac\n[ -n "$POINT_ID" ]\n' +
        '/bin/busybox wget -qO- "http://$VM_IP/" | grep -q "lifeboat-lab $VM_NAME"\necho "page of $VM_NAME at $VM_IP"\n',
    );
    await chmod(script, 0o755);
    const reportDir = join(ctx.dir, 'report-pass');
    const started = performance.now();
    const r = await surebackup([
      '--vm',
      'web',
      '--vm',
      'db',
      '--port',
      'web:80',
      '--http',
      'web:http://{ip}/',
      '--http',
      'db:http://{ip}/',
      // By name: the lab's resolv.conf sends the probe's lookup to the lab's dnsmasq.
      '--http',
      'web:http://web.lab/',
      '--script',
      script,
      '--timeout',
      '180',
      '--report-dir',
      reportDir,
    ]);
    const report = parse(r.stdout);
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.vms.map((v) => [v.job, v.ip, v.name, v.booted]),
      [
        ['web', '10.99.0.10', 'web', true],
        ['db', '10.99.0.11', 'db', true],
      ],
    );
    const names = (job: string): string[] => report.vms.find((v) => v.job === job)!.tests.map((t) => t.name);
    for (const n of ['heartbeat', 'ping', 'tcp:80', 'http:http://10.99.0.10/', 'http:http://web.lab/', `script:${script}`, 'verify', 'screenshot'])
      assert.ok(names('web').includes(n), `web ran ${n}: ${names('web').join(', ')}`);
    assert.ok(names('db').includes('http:http://10.99.0.11/'), 'each VM gets its own {ip}');
    for (const v of report.vms) {
      assert.ok(v.tests.every((t) => t.ok));
      assert.match(v.point, /\S+/);
      const png = await readFile(v.screenshot!);
      assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE), `${v.screenshot} is a PNG`);
    }
    assert.match(report.vms[0]!.tests.find((t) => t.name === 'heartbeat')!.detail, /guest agent|serial/);
    assert.deepEqual(JSON.parse(await readFile(join(reportDir, 'report.json'), 'utf8')).ok, true);
    // The run handed its report to the server: the HTTP API lists it.
    const listed = await fetch(`${ctx.server!.httpUrl}/repositories/repo/surebackup/reports`, {
      headers: { authorization: `Bearer ${await adminToken(ctx.repo)}` },
    });
    const body = (await listed.json()) as { reports: { id: string; ok: boolean; vms: unknown[] }[] };
    const newest = body.reports[0];
    assert.deepEqual([newest?.id, newest?.ok, newest?.vms.length], [report.id, true, 2], `${JSON.stringify(body)}\n${r.stderr}`);
    assert.deepEqual(await leftovers(), []);
    t.diagnostic(`two-VM group: ${Math.round(performance.now() - started) / 1000} s; boots ${report.vms.map((v) => v.seconds).join(' s, ')} s`);
  },
);

test(
  'a point whose kernel is damaged does not boot: exit 4, booted false, the heartbeat says why; a VM waiting for it is still tried (readable report)',
  { timeout: 5 * 60_000 },
  async (t) => {
    const reportDir = join(ctx.dir, 'report-broken');
    const r = await cli([
      ...['surebackup', 'run', '--repo', ctx.repo, '--accel', 'tcg', '--vm', 'broken', '--vm', 'web', '--wait-for', 'broken'],
      ...['--http', 'web:http://{ip}/', '--timeout', '40', '--report-dir', reportDir],
    ]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /LFB_ERR_SUREBACKUP_FAILED/);
    assert.match(r.stdout, /^SureBackup report \d{8}-\d{6}-[0-9a-f]{6}: FAILED/m);
    assert.match(r.stdout, /^broken @ \S+ {2}broken 10\.99\.0\.10 {2}did not boot$/m);
    assert.match(r.stdout, /^ {2}FAIL {2}heartbeat: /m);
    const report = parse(await readFile(join(reportDir, 'report.json'), 'utf8'));
    assert.equal(report.ok, false);
    const vm = report.vms[0]!;
    assert.equal(vm.booted, false);
    const hb = vm.tests.find((x) => x.name === 'heartbeat')!;
    assert.equal(hb.ok, false);
    // Why, and what the console showed last: a person sees the guest never got to its init.
    assert.match(hb.detail, /serial log ends/);
    t.diagnostic(`heartbeat: ${hb.detail}`);
    assert.equal(vm.tests.find((x) => x.name === 'ping')?.detail, 'not run: the VM did not pass its heartbeat');
    assert.equal(vm.tests.find((x) => x.name === 'verify')?.ok, true, 'the blocks are whole: the backup holds a broken guest faithfully');
    // web waited for broken's heartbeat to fail (40 s), then booted and passed, and the report says why it started anyway.
    const web = report.vms[1]!;
    assert.equal(web.booted, true);
    assert.ok(
      web.tests.every((x) => x.ok),
      JSON.stringify(web.tests),
    );
    assert.match(web.note ?? '', /broken, which it waits for, did not pass its heartbeat/);
    assert.match(r.stdout, /^ {2}note: started although broken/m);
    assert.ok(Date.parse(report.endedAt) - Date.parse(report.startedAt) >= 40_000 + web.seconds * 1000);
    assert.deepEqual(await leftovers(), []);
  },
);

test('without a running serve: LFB_ERR_SERVER_NOT_RUNNING, and nothing is made', async () => {
  const repo = join(ctx.dir, 'repo-unserved');
  assert.equal((await cli(['repo', 'init', repo])).code, 0);
  const r = await cli(['surebackup', 'run', '--repo', repo, '--vm', 'web']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /LFB_ERR_SERVER_NOT_RUNNING/);
  assert.equal(existsSync(join(repo, 'surebackup')), false);
});

test('kill -9 of a run while its VMs boot: the next run removes what it left and passes', { timeout: 8 * 60_000 }, async () => {
  const { child, exited } = spawnRun();
  try {
    await bothVmsStarted();
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  assert.notDeepEqual(await leftovers(), [], 'a killed run leaves its lab (else this case proves nothing)');
  const r = await surebackup(['--vm', 'web', '--timeout', '180', '--http', 'web:http://{ip}/', '--report-dir', join(ctx.dir, 'report-after-kill')]);
  const report = parse(r.stdout);
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
  assert.ok(report.vms[0]!.tests.every((t) => t.ok));
  assert.deepEqual(await leftovers(), []);
});

test('SIGTERM while the VMs boot: the run removes its lab before it exits (143)', { timeout: 5 * 60_000 }, async () => {
  const { child, exited, stderr } = spawnRun();
  try {
    await bothVmsStarted();
    child.kill('SIGTERM');
    assert.equal(await exited, 143, stderr());
  } finally {
    child.kill('SIGKILL');
  }
  assert.match(stderr(), /LFB_ERR_INTERRUPTED/);
  assert.deepEqual(await leftovers(), []);
});

test('isolation: a lab VM never reaches the host or another namespace (its probes never connect)', { timeout: 8 * 60_000 }, async () => {
  const onHost = await listenOnHost('0.0.0.0');
  try {
    await withReachableNetns(async (other) => {
      const inOther = await listenInNetns(other.netns, other.ip);
      try {
        const targets = [`${await hostExternalAddress()}:${onHost.port}`, `${other.ip}:${inOther.port}`];
        const probe = await buildLabImage(join(ctx.dir, 'probe.img'), ctx.build, { probe: targets });
        await backUp('iso', probe);
        // The script holds the run until the guest has given up on both targets (it tries for 30 s after its network is up).
        const flag = join(ctx.dir, 'probes-done');
        const script = join(ctx.dir, 'wait-probes.sh');
        await writeFile(script, `#!/bin/sh\nfor i in $(seq 1 100); do [ -f ${flag} ] && exit 0; sleep 1; done\nexit 1\n`);
        await chmod(script, 0o755);
        const running = surebackup(['--vm', 'iso', '--timeout', '180', '--script', script, '--report-dir', join(ctx.dir, 'report-iso')]);
        const serial = await until(
          'the guest to report its probes',
          async () => {
            const s = (await listSessions()).find((x) => x.name.startsWith('sb-'));
            const text = s?.vm ? await readFile(s.vm.serialLog, 'utf8').catch(() => '') : '';
            return (text.match(/^PROBE \S+ (never|connected)/gm) ?? []).length >= 2 ? text : undefined;
          },
          180_000,
          500,
        ).finally(() => writeFile(flag, ''));
        const r = await running;
        parse(r.stdout);
        assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
        for (const t of targets) assert.match(serial, new RegExp(`^PROBE ${t.replaceAll('.', '\\.')} never`, 'm'));
        assert.doesNotMatch(serial, /connected/);
        assert.equal(onHost.connections(), 0);
        assert.equal(inOther.connections(), 0);
        // The listeners take connections from where they may: the lab is what kept the guest out.
        await run('/bin/busybox', ['nc', '-w', '2', other.ip, String(inOther.port)], { timeout: 10_000 });
        await until('the other namespace to count the host', async () => (inOther.connections() === 1 ? true : undefined), 5_000, 50);
        assert.deepEqual(await leftovers(), []);
      } finally {
        await inOther.close();
      }
    });
  } finally {
    await onHost.close();
  }
});

async function listSessions(): Promise<{ name: string; vm?: { serialLog: string } }[]> {
  const r = await cli(['instant', 'list', '--repo', ctx.repo, '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { name: string; vm?: { serialLog: string } }[]) : [];
}
