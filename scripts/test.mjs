// Runs the compiled tests (dist/test/*.test.js) with node's test runner.
//   node scripts/test.mjs          every test: what CI runs (root, QEMU, ports 111 and up)
//   node scripts/test.mjs --unit   the fast tier: no root, no QEMU, no listening port; under a minute
//   node scripts/test.mjs <name>…  the named files only (e.g. overlay-model)
//   node scripts/test.mjs --list    the files a run would start, in its order (with --unit or names too)
// The fast tier is a list, not a naming rule, so that moving a test between tiers is one line here.
import { readFileSync, readdirSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';

// Left to the full suite, though they need no root: the slowest files alone (3.5-13.9 s each, 2026-12-06),
// slow by design: nbd-hardening and sessions-hardening wait out real timeouts, nfs-listing lists 10,000 files,
// cli-reports, cli-help and cli-module-loading start dozens of CLI processes, guestfish-listen-race races a late
// server many times.
const UNIT = [
  'codec',
  'errors-doc',
  'format',
  'retention',
  'cow-overlay',
  'overlay-durability',
  'overlay-model',
  'rpc-record-marking',
  'nfs-hardening',
  'nfs-decoders',
  'nbd-hostile',
  'nbd-errors',
  'nbd-flush',
  'batched-writes',
  'fuzz',
  'fuzz-regressions',
  'lock-file',
  'retention-run',
  'block-cache',
  'decoded-store',
  'local-storage',
  'storage-local',
  'storage-objects',
  'object-files-model',
  'decoded-fds',
  'read-now',
  'background-fills',
  'read-ahead',
  'lent-reads',
  'guest-fs-stream',
  'boot-prefetch',
  'fault-durable-file',
  'retention-defaults-model',
  'instant-storage',
  'spawner',
  'block-pool',
  'map-limited',
  'nbd-disk-source',
  'object-folder-files',
  'overlay-seal',
  'auth',
  'auth-tls',
  'schedule-model',
  'catalog-sqlite',
  'http-errors',
  'http-api',
  'http-api-sessions',
  'run-events-end',
  'service-runtime-notify',
  'catalog-query-plans',
  'http-console',
  'qmp-deadlines',
  'lab-plan',
  'lab-sessions',
  'contrib-systemd',
  'immutable-until',
  'control-no-answer',
  'control-files-gone',
  'sse-gone',
  'http-job-stop',
  'file-sessions-stopping',
  'files-tar-stream',
  'scheduler-lease',
  'mover-hub',
  'objects-local',
  'objects-s3-config',
];

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const dir = join(root, 'dist', 'test');
const all = readdirSync(dir)
  .filter((n) => n.endsWith('.test.js'))
  .map((n) => n.slice(0, -'.test.js'.length))
  .sort();
const args = process.argv.slice(2);
const named = args.filter((a) => !a.startsWith('--'));
let chosen;
if (args.includes('--unit')) {
  const missing = UNIT.filter((n) => !all.includes(n));
  if (missing.length) {
    console.error(`scripts/test.mjs: the fast tier names tests that do not exist: ${missing.join(', ')}`);
    process.exit(2);
  }
  chosen = UNIT;
} else if (named.length > 0) {
  chosen = named.map((a) => a.replace(/\.test\.(js|ts)$/, ''));
} else {
  chosen = fullRunOrder(all);
}

/**
 * The order of a full run (two files at a time): the slowest files first, so that none of them starts near the end
 * and leaves one slot idle; and the files that take port 111 (withPort111: one at a time on a machine) spread out
 * among the others, so that two of them rarely run side by side, where one would wait on the lock holding a slot.
 */
function fullRunOrder(names) {
  // The slowest files in CI (seconds in its run of 2026-12-03): crash 462, crash-random 407, files 345, http-files
  // 266, surebackup 238, surebackup-jobs-e2e 203, instant-vm 169, files-content 164, compact 160, service-e2e 124.
  const SLOWEST = [
    'crash',
    'crash-random',
    'files',
    'http-files',
    'surebackup',
    'surebackup-jobs-e2e',
    'instant-vm',
    'files-content',
    'compact',
    'service-e2e',
  ];
  const takesPort111 = (n) => readFileSync(join(dir, `${n}.test.js`), 'utf8').includes('withPort111(');
  const slow = SLOWEST.filter((n) => names.includes(n));
  const rest = names.filter((n) => !slow.includes(n));
  const port = rest.filter(takesPort111);
  const free = rest.filter((n) => !port.includes(n));
  const spread = [];
  const every = Math.max(1, Math.floor(free.length / (port.length + 1)));
  for (let i = 0; i < free.length; i++) {
    spread.push(free[i]);
    if ((i + 1) % every === 0 && port.length > 0) spread.push(port.shift());
  }
  return [...slow, ...spread, ...port];
}
if (args.includes('--list')) {
  console.log(chosen.join('\n'));
  process.exit(0);
}
// Every file has a deadline (a test that hangs fails its file instead of holding the whole run),
// and the runner gets a process group of its own: whatever a test started and left running is named
// and killed at the end, so a leaked QEMU or helper cannot keep the run (or CI's output pipe) open.
const FILE_TIMEOUT_MS = 20 * 60_000;
const runner = spawn(
  process.execPath,
  ['--test', '--test-concurrency=2', `--test-timeout=${FILE_TIMEOUT_MS}`, '--test-reporter=spec', ...chosen.map((n) => join(dir, `${n}.test.js`))],
  { stdio: 'inherit', detached: true },
);
const killGroup = (signal) => {
  try {
    process.kill(-runner.pid, signal);
  } catch {
    // the group is empty
  }
};
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => killGroup(s));
const status = await new Promise((resolve) => runner.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
const left = spawnSync('ps', ['-o', 'pid=,args=', '-g', String(runner.pid)], { encoding: 'utf8' }).stdout.trim();
if (left) {
  console.error(`scripts/test.mjs: processes the tests left running, now killed:\n${left}`);
  killGroup('SIGKILL');
}
process.exit(status);
