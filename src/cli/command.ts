import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LifeboatError } from '../core/errors.js';
import type { LifeboatService } from '../app/service.js';

/** One flag: what parseArgs needs, plus what `--help` prints. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** What the flag does, for `--help`. */
  readonly description: string;
  /** What applies when the flag is not given, in words (e.g. "1M", "off"); absent when the flag is required or has no default. */
  readonly defaultText?: string;
}

export type Options = Readonly<Record<string, OptionSpec>>;

/** --repo, which most commands take. */
export const REPO_OPTION: OptionSpec = { type: 'string', description: 'the repository folder', defaultText: '$LIFEBOAT_REPO' };
/** --json, on every command that reports something. */
export const JSON_OPTION: OptionSpec = { type: 'boolean', description: 'print the result as JSON', defaultText: 'human-readable text' };
/** --wait, on the commands that take a job's lock. */
export const WAIT_OPTION: OptionSpec = {
  type: 'boolean',
  description: 'wait up to 6 hours for a running backup, job set or job delete of the job to finish',
  defaultText: 'fail at once with LFB_ERR_JOB_LOCKED',
};

export interface Command {
  /** e.g. "repo init" */
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly options: Options;
  /** Number of positional arguments the command takes. */
  readonly positionals: readonly string[];
  /** Positional arguments that may follow the required ones (e.g. `files ls <job> [<path>]`). */
  readonly optionalPositionals?: readonly string[];
  run(ctx: CommandContext): Promise<void>;
}

export interface CommandContext {
  readonly service: LifeboatService;
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly args: readonly string[];
  readonly out: (line: string) => void;
  readonly progress: (line: string) => void;
  /** Aborted by SIGINT or SIGTERM (reason: the signal's name) for the commands that stop at safe points. */
  readonly signal: AbortSignal;
}

export function parseCommandArgs(cmd: Command, argv: string[]): { values: CommandContext['values']; args: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: parseArgsOptions(cmd.options), allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(cmd, (err as Error).message.replace(/\. To specify.*$/s, ''));
  }
  const optional = cmd.optionalPositionals ?? [];
  const n = parsed.positionals.length;
  if (parsed.values['help'] !== true && (n < cmd.positionals.length || n > cmd.positionals.length + optional.length)) {
    const words = [...cmd.positionals.map((p) => `<${p}>`), ...optional.map((p) => `[<${p}>]`)];
    throw usageError(cmd, `lifeboat ${cmd.name} takes ${words.join(' ') || 'no arguments'}`);
  }
  // parseArgs types values from a generic table; a `multiple` flag here is always a string one, so its values are string[].
  return { values: parsed.values as CommandContext['values'], args: parsed.positionals };
}

/** The option table as parseArgs takes it (its own keys only), with --help added. */
function parseArgsOptions(options: Options): NonNullable<ParseArgsConfig['options']> {
  const out: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(options))
    out[name] = { type: o.type, ...(o.multiple === true ? { multiple: true } : {}), ...(o.short !== undefined ? { short: o.short } : {}) };
  return out;
}

/** A usage mistake: what is wrong, the short usage line and where the full help is; never the whole help. */
export function usageError(cmd: Pick<Command, 'name' | 'usage'>, problem: string): LifeboatError {
  return new LifeboatError('LFB_ERR_USAGE', `${problem}\nusage: lifeboat ${cmd.usage}\nsee lifeboat ${cmd.name} --help`);
}

/** `lifeboat <command> --help`: usage, summary, then every flag with what it does and its default. */
export function commandHelp(cmd: Command): string {
  const rows = Object.entries(cmd.options).map(([name, o]) => {
    const flag = `--${name}${o.type === 'string' ? ' <value>' : ''}${o.multiple === true ? ' (repeatable)' : ''}`;
    return { flag, text: `${o.description}${o.defaultText !== undefined ? ` (default: ${o.defaultText})` : ''}` };
  });
  rows.push({ flag: '--help, -h', text: 'show this help' });
  const width = Math.max(...rows.map((r) => r.flag.length));
  return [`usage: lifeboat ${cmd.usage}`, '', cmd.summary, '', 'options:', ...rows.map((r) => `  ${r.flag.padEnd(width)}  ${r.text}`)].join('\n');
}

export function requireString(ctx: CommandContext, flag: string): string {
  const v = ctx.values[flag];
  if (typeof v !== 'string' || v === '') throw new LifeboatError('LFB_ERR_USAGE', `--${flag} is required`);
  return v;
}

export function optionalString(ctx: CommandContext, flag: string): string | undefined {
  const v = ctx.values[flag];
  return typeof v === 'string' ? v : undefined;
}
