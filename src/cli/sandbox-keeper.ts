/**
 * The keeper of one sandbox, started detached by `lifeboat sandbox start`:
 *
 *   node sandbox-keeper.js <repo> <name>
 *
 * Reads the sandbox's spec, makes and holds the sandbox (src/lab/sandbox.ts),
 * and on SIGTERM or SIGINT (`lifeboat sandbox stop`) removes it and exits.
 * Its standard output and error go to the sandbox's log file.
 */
import { controlApiLabSessions, labStateDir } from '../app/lab-sessions.js';
import { systemClock } from '../core/clock.js';
import { keepSandbox } from '../lab/sandbox.js';
import { readSandboxSpec } from '../lab/sandbox-status.js';
import { sandboxesDir } from './commands/sandbox.js';

const [repo, name] = process.argv.slice(2);
if (repo === undefined || name === undefined) {
  process.stderr.write('usage: sandbox-keeper.js <repo> <name>\n');
  process.exit(2);
}
const log = (line: string): void => void process.stdout.write(`${systemClock.now().toISOString()} ${line}\n`);
const stop = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    log(`${sig}: stopping`);
    stop.abort(sig);
  });
// Detached from the terminal that started it: a closed terminal is not a reason to stop.
process.on('SIGHUP', () => undefined);

try {
  const dir = sandboxesDir(repo);
  const spec = await readSandboxSpec(dir, name);
  if (spec === undefined) throw new Error(`no spec for sandbox ${name} in ${dir}`);
  await keepSandbox({ spec, sessions: controlApiLabSessions(repo), stateDir: labStateDir(repo), sandboxDir: dir, signal: stop.signal, onProgress: log });
  log('stopped; everything removed');
  process.exitCode = 0;
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
}
