// A command line loads its own command's module (and what that imports), not every command's: all of them
// together are a graph of 239 modules, about 0.2 s of every start. The service loads only for a command that runs.
import { clockFromEnv } from '../core/clock.js';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { commandHelp, parseCommandArgs, usageError, type Command } from './command.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { catchInterrupts, interruptOutcome, STOPS_AT_SAFE_POINTS } from './interrupt.js';
import { installPasswordSource, takePasswordFileFlag } from './repo-password.js';

/** Every command by name, in the order of `lifeboat --help`, with the module that holds it. */
const COMMAND_MODULES: readonly (readonly [name: string, load: () => Promise<Readonly<Record<string, unknown>>>])[] = [
  ['repo init', () => import('./commands/repo-init.js')],
  ['repo info', () => import('./commands/repo-info.js')],
  ['repo passwd', () => import('./commands/repo-key.js')],
  ['repo key export', () => import('./commands/repo-key.js')],
  ['job create', () => import('./commands/job-create.js')],
  ['job list', () => import('./commands/job-list.js')],
  ['job show', () => import('./commands/job-show.js')],
  ['job set', () => import('./commands/job-set.js')],
  ['job delete', () => import('./commands/job-delete.js')],
  ['backup', () => import('./commands/backup.js')],
  ['points', () => import('./commands/points.js')],
  ['restore', () => import('./commands/restore.js')],
  ['verify', () => import('./commands/verify.js')],
  ['compact', () => import('./commands/compact.js')],
  ['retention plan', () => import('./commands/retention-plan.js')],
  ['serve', () => import('./commands/serve.js')],
  ['mover', () => import('./commands/mover.js')],
  ['instant start', () => import('./commands/instant.js')],
  ['instant list', () => import('./commands/instant.js')],
  ['instant stop', () => import('./commands/instant.js')],
  ['instant migrate', () => import('./commands/instant.js')],
  ['instant add-disk', () => import('./commands/instant.js')],
  ['surebackup run', () => import('./commands/surebackup.js')],
  ['surebackup job create', () => import('./commands/surebackup-job.js')],
  ['surebackup job set', () => import('./commands/surebackup-job.js')],
  ['surebackup job show', () => import('./commands/surebackup-job.js')],
  ['surebackup job list', () => import('./commands/surebackup-job.js')],
  ['surebackup job delete', () => import('./commands/surebackup-job.js')],
  ['surebackup job run', () => import('./commands/surebackup-job.js')],
  ['sandbox start', () => import('./commands/sandbox.js')],
  ['sandbox list', () => import('./commands/sandbox.js')],
  ['sandbox stop', () => import('./commands/sandbox.js')],
  ['user add', () => import('./commands/user.js')],
  ['user list', () => import('./commands/user.js')],
  ['user set', () => import('./commands/user.js')],
  ['user delete', () => import('./commands/user.js')],
  ['token create', () => import('./commands/token.js')],
  ['token list', () => import('./commands/token.js')],
  ['token revoke', () => import('./commands/token.js')],
  ['catalog rebuild', () => import('./commands/catalog.js')],
  ['copy create', () => import('./commands/copy.js')],
  ['copy show', () => import('./commands/copy.js')],
  ['copy list', () => import('./commands/copy.js')],
  ['copy delete', () => import('./commands/copy.js')],
  ['copy run', () => import('./commands/copy.js')],
  ['tier set', () => import('./commands/tier.js')],
  ['tier show', () => import('./commands/tier.js')],
  ['tier run', () => import('./commands/tier.js')],
  ['tier clear', () => import('./commands/tier.js')],
  ['files ls', () => import('./commands/files.js')],
  ['files get', () => import('./commands/files.js')],
  ['files find', () => import('./commands/files.js')],
  ['files mount', () => import('./commands/files-mount.js')],
  ['files umount', () => import('./commands/files-mount.js')],
];

/** The names of every command, in the order of `lifeboat --help`. */
export const COMMAND_NAMES: readonly string[] = COMMAND_MODULES.map(([name]) => name);

const isCommand = (v: unknown): v is Command =>
  typeof v === 'object' && v !== null && typeof (v as Command).name === 'string' && typeof (v as Command).run === 'function';

/** The command of that name, from its module. */
export async function loadCommand(name: string): Promise<Command> {
  const entry = COMMAND_MODULES.find(([n]) => n === name);
  const cmd = entry && Object.values(await entry[1]()).find((v): v is Command => isCommand(v) && v.name === name);
  if (!cmd) throw new LifeboatError('LFB_ERR_INTERNAL', `no command "${name}" in the module the command table names for it`);
  return cmd;
}

/** Every command, in the order of `lifeboat --help` (loads every command's module). */
export function loadCommands(): Promise<Command[]> {
  return Promise.all(COMMAND_NAMES.map(loadCommand));
}

async function help(): Promise<string> {
  const commands = await loadCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'lifeboat: backup and instant recovery for virtual-machine disks',
    '',
    'usage: lifeboat <command> [options]   (lifeboat <command> --help for its options)',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Environment: LIFEBOAT_REPO=<dir> stands for --repo when it is not given; LIFEBOAT_STATE_DIR=<dir> for --state-dir; LIFEBOAT_NOW=<ISO time> pins the clock (a testing aid); LIFEBOAT_LOG=debug|info|warn; LIFEBOAT_PASSWORD_FILE=<file> (or --password-file <file> on any command) holds the password of an encrypted repository (asked on a terminal otherwise).',
  ].join('\n');
}

/** Finds the command whose words start argv (longest names first: `surebackup job run` before `surebackup run`). */
async function findCommand(argv: string[]): Promise<{ cmd: Command; rest: string[] } | undefined> {
  for (const words of [3, 2, 1]) {
    const name = argv.slice(0, words).join(' ');
    if (COMMAND_NAMES.includes(name)) return { cmd: await loadCommand(name), rest: argv.slice(words) };
  }
  return undefined;
}

/** Levenshtein distance: how many one-letter edits turn a into b. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

/** The command closest to what was typed (one or two words), if it is close enough to be a typo. */
export function closestCommand(argv: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of COMMAND_NAMES) {
    const typed = argv.slice(0, name.split(' ').length).join(' ');
    const distance = editDistance(typed, name);
    if (best === undefined || distance < best.distance) best = { name, distance };
  }
  // A typo changes a few letters; beyond that the guess would be noise.
  return best !== undefined && best.distance <= Math.max(2, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

/** Last resort: a bug that escapes every handler still ends with a clear, coded message. */
function installCrashHandlers(): void {
  const die = (err: unknown): void => {
    process.stderr.write(`lifeboat: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)} [LFB_ERR_INTERNAL]\n`);
    process.exit(EXIT.failure);
  };
  process.on('unhandledRejection', die);
  process.on('uncaughtException', die);
}

export async function main(given: string[]): Promise<number> {
  installCrashHandlers();
  // `lifeboat … | head`: a reader that stops early is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  let argv = given;
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write((await help()) + '\n');
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === '--version') {
    process.stdout.write('lifeboat 0.1.0\n');
    return EXIT.ok;
  }
  const isTty = process.stderr.isTTY === true;
  let progressShown = false;
  let interrupts: ReturnType<typeof catchInterrupts> | undefined;
  let command: Command | undefined;
  try {
    // Any command may open an encrypted repository: its password file is one flag for all of them.
    const taken = takePasswordFileFlag(argv);
    argv = taken.argv;
    installPasswordSource(taken.file);
    const found = await findCommand(argv);
    if (!found) {
      const guess = closestCommand(argv);
      throw new LifeboatError(
        'LFB_ERR_USAGE',
        `unknown command "${argv.slice(0, 2).join(' ')}"${guess !== undefined ? `; did you mean "lifeboat ${guess}"?` : ''}\nsee lifeboat --help for the commands`,
      );
    }
    command = found.cmd;
    const { values, args } = parseCommandArgs(found.cmd, found.rest);
    if (values['help'] === true) {
      process.stdout.write(commandHelp(found.cmd) + '\n');
      return EXIT.ok;
    }
    const envRepo = process.env['LIFEBOAT_REPO'];
    if (found.cmd.options['repo'] !== undefined && values['repo'] === undefined) {
      if (envRepo === undefined || envRepo === '') throw usageError(found.cmd, '--repo <dir> is required (or set LIFEBOAT_REPO)');
      values['repo'] = envRepo;
    }
    const { LifeboatService } = await import('../app/service.js');
    const service = new LifeboatService(clockFromEnv());
    interrupts = STOPS_AT_SAFE_POINTS.has(found.cmd.name) ? catchInterrupts() : undefined;
    await found.cmd.run({
      service,
      values,
      args,
      out: (line) => {
        if (progressShown) process.stderr.write('\r\x1b[K');
        progressShown = false;
        process.stdout.write(line + '\n');
      },
      // Progress is for people: shown on a terminal, silent in scripts.
      progress: (line) => {
        if (!isTty) return;
        process.stderr.write(`\r\x1b[K${line}`);
        progressShown = true;
      },
      signal: interrupts?.signal ?? new AbortController().signal,
    });
    if (progressShown) process.stderr.write('\r\x1b[K');
    return EXIT.ok;
  } catch (err) {
    if (progressShown) process.stderr.write('\n');
    const interrupted = interrupts && interruptOutcome(err, interrupts.signal);
    if (interrupted) {
      process.stderr.write(`lifeboat: ${interrupted.error.message} [${interrupted.error.code}]\n`);
      return interrupted.exit;
    }
    if (isLifeboatError(err)) {
      // Every usage mistake points to the command's full help (the error itself stays short).
      const hint = err.code === 'LFB_ERR_USAGE' && command !== undefined && !err.message.includes('--help') ? `\nsee lifeboat ${command.name} --help` : '';
      process.stderr.write(`lifeboat: ${err.message}${hint} [${err.code}]\n`);
      return exitCodeFor(err);
    }
    process.stderr.write(`lifeboat: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)} [LFB_ERR_INTERNAL]\n`);
    return EXIT.failure;
  } finally {
    interrupts?.dispose();
  }
}
