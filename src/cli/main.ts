// The service alone: the server side (protocols, instant recovery) loads only for `serve`, so short commands start fast.
import { LifeboatService } from '../app/service.js';
import { clockFromEnv } from '../core/clock.js';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { commandHelp, parseCommandArgs, usageError, type Command } from './command.js';
import { backup } from './commands/backup.js';
import { jobCreate } from './commands/job-create.js';
import { jobList } from './commands/job-list.js';
import { jobShow } from './commands/job-show.js';
import { jobSet } from './commands/job-set.js';
import { jobDelete } from './commands/job-delete.js';
import { points } from './commands/points.js';
import { repoInit } from './commands/repo-init.js';
import { repoInfo } from './commands/repo-info.js';
import { repoKeyExport, repoPasswd } from './commands/repo-key.js';
import { restore } from './commands/restore.js';
import { retentionPlan } from './commands/retention-plan.js';
import { serve } from './commands/serve.js';
import { verify } from './commands/verify.js';
import { compact } from './commands/compact.js';
import { instantAddDisk, instantList, instantMigrate, instantStart, instantStop } from './commands/instant.js';
import { userAdd, userDelete, userList, userSet } from './commands/user.js';
import { tokenCreate, tokenList, tokenRevoke } from './commands/token.js';
import { catalogRebuild } from './commands/catalog.js';
import { surebackupRun } from './commands/surebackup.js';
import {
  surebackupJobCreate,
  surebackupJobDelete,
  surebackupJobList,
  surebackupJobRun,
  surebackupJobSet,
  surebackupJobShow,
} from './commands/surebackup-job.js';
import { sandboxList, sandboxStart, sandboxStop } from './commands/sandbox.js';
import { filesFind, filesGet, filesLs } from './commands/files.js';
import { filesMount, filesUmount } from './commands/files-mount.js';
import { copyCreate, copyDelete, copyList, copyRun, copyShow } from './commands/copy.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { catchInterrupts, interruptOutcome, STOPS_AT_SAFE_POINTS } from './interrupt.js';
import { installPasswordSource, takePasswordFileFlag } from './repo-password.js';

export const COMMANDS: readonly Command[] = [
  repoInit,
  repoInfo,
  repoPasswd,
  repoKeyExport,
  jobCreate,
  jobList,
  jobShow,
  jobSet,
  jobDelete,
  backup,
  points,
  restore,
  verify,
  compact,
  retentionPlan,
  serve,
  instantStart,
  instantList,
  instantStop,
  instantMigrate,
  instantAddDisk,
  surebackupRun,
  surebackupJobCreate,
  surebackupJobSet,
  surebackupJobShow,
  surebackupJobList,
  surebackupJobDelete,
  surebackupJobRun,
  sandboxStart,
  sandboxList,
  sandboxStop,
  userAdd,
  userList,
  userSet,
  userDelete,
  tokenCreate,
  tokenList,
  tokenRevoke,
  catalogRebuild,
  copyCreate,
  copyShow,
  copyList,
  copyDelete,
  copyRun,
  filesLs,
  filesGet,
  filesFind,
  filesMount,
  filesUmount,
];

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'lifeboat: backup and instant recovery for virtual-machine disks',
    '',
    'usage: lifeboat <command> [options]   (lifeboat <command> --help for its options)',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Environment: LIFEBOAT_REPO=<dir> stands for --repo when it is not given; LIFEBOAT_STATE_DIR=<dir> for --state-dir; LIFEBOAT_NOW=<ISO time> pins the clock (a testing aid); LIFEBOAT_LOG=debug|info|warn; LIFEBOAT_PASSWORD_FILE=<file> (or --password-file <file> on any command) holds the password of an encrypted repository (asked on a terminal otherwise).',
  ].join('\n');
}

/** Finds the command whose words start argv (longest names first: `surebackup job run` before `surebackup run`). */
function findCommand(argv: string[]): { cmd: Command; rest: string[] } | undefined {
  for (const words of [3, 2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const cmd = COMMANDS.find((c) => c.name === name);
    if (cmd) return { cmd, rest: argv.slice(words) };
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
  for (const c of COMMANDS) {
    const typed = argv.slice(0, c.name.split(' ').length).join(' ');
    const distance = editDistance(typed, c.name);
    if (best === undefined || distance < best.distance) best = { name: c.name, distance };
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
    process.stdout.write(help() + '\n');
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
    const found = findCommand(argv);
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
