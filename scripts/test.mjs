// Runs the compiled tests (dist/test/*.test.js) with node's test runner.
//   node scripts/test.mjs          every test: what CI runs (root, QEMU, ports 111 and up)
//   node scripts/test.mjs --unit   the fast tier: no root, no QEMU, no listening port; under a minute
//   node scripts/test.mjs <name>…  the named files only (e.g. overlay-model)
// The fast tier is a list, not a naming rule, so that moving a test between tiers is one line here.
import { readdirSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';

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
  'nbd-hardening',
  'nbd-hostile',
  'nbd-errors',
  'nbd-flush',
  'fuzz',
  'fuzz-regressions',
  'lock-file',
  'retention-run',
  'block-cache',
  'fault-durable-file',
  'retention-defaults-model',
  'instant-storage',
  'nfs-listing',
  'sessions-hardening',
  'cli-help',
  'cli-reports',
  'overlay-seal',
  'auth',
  'auth-tls',
  'schedule-model',
  'catalog-sqlite',
  'http-errors',
  'http-api',
  'http-api-sessions',
  'service-runtime-notify',
  'catalog-query-plans',
  'http-console',
  'qmp-deadlines',
  'lab-plan',
  'lab-sessions',
  'contrib-systemd',
  'immutable-until',
];

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const dir = join(root, 'dist', 'test');
const all = readdirSync(dir)
  .filter((n) => n.endsWith('.test.js'))
  .map((n) => n.slice(0, -'.test.js'.length))
  .sort();
const args = process.argv.slice(2);
let chosen;
if (args.includes('--unit')) {
  const missing = UNIT.filter((n) => !all.includes(n));
  if (missing.length) {
    console.error(`scripts/test.mjs: the fast tier names tests that do not exist: ${missing.join(', ')}`);
    process.exit(2);
  }
  chosen = UNIT;
} else if (args.length > 0) {
  chosen = args.map((a) => a.replace(/\.test\.(js|ts)$/, ''));
} else {
  chosen = all;
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
