import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LifeboatError } from '../core/errors.js';
import type { LifeboatService } from '../app/service.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  /** e.g. "repo init" */
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly options: Options;
  /** Number of positional arguments the command takes. */
  readonly positionals: readonly string[];
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
    parsed = parseArgs({ args: argv, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new LifeboatError('LFB_ERR_USAGE', `${(err as Error).message.replace(/\. To specify.*$/s, '')}\nusage: lifeboat ${cmd.usage}`);
  }
  if (parsed.values['help'] !== true && parsed.positionals.length !== cmd.positionals.length) {
    throw new LifeboatError(
      'LFB_ERR_USAGE',
      `lifeboat ${cmd.name} takes ${cmd.positionals.map((p) => `<${p}>`).join(' ') || 'no arguments'}\nusage: lifeboat ${cmd.usage}`,
    );
  }
  return { values: parsed.values, args: parsed.positionals };
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
