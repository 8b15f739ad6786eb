/**
 * The server's state folder (--state-dir, LIFEBOAT_STATE_DIR, else
 * /var/lib/lifeboat): its catalog (catalog.db), its HTTPS certificate (tls/).
 * The user and token commands open its catalog directly, so they work
 * whether or not a server is running.
 */
import { stat } from 'node:fs/promises';
import type { Catalog } from '../catalog/index.js';
import { openCatalog } from '../catalog/index.js';
import { LifeboatError } from '../core/errors.js';
import type { CommandContext, OptionSpec } from './command.js';

export const DEFAULT_STATE_DIR = '/var/lib/lifeboat';

export const STATE_DIR_OPTION: OptionSpec = {
  type: 'string',
  description: "the server's state folder (its catalog of users, tokens and runs)",
  defaultText: `$LIFEBOAT_STATE_DIR, else ${DEFAULT_STATE_DIR}`,
};

export const CATALOG_OPTION: OptionSpec = {
  type: 'string',
  description: 'the catalog database: postgres://… (or a folder for SQLite), as serve --catalog',
  defaultText: 'SQLite in the state folder',
};

export function stateDirOf(ctx: Pick<CommandContext, 'values'>, env: NodeJS.ProcessEnv = process.env): string {
  const given = ctx.values['state-dir'];
  if (typeof given === 'string' && given !== '') return given;
  const fromEnv = env['LIFEBOAT_STATE_DIR'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_STATE_DIR;
}

/**
 * Runs `fn` with the catalog --catalog names (a database URL: servers sharing one PostgreSQL catalog), else
 * the state folder's, closed afterwards. `create`: make the folder and catalog when missing (user add);
 * otherwise a folder that does not exist is an error, not a new empty catalog (a mistyped --state-dir must
 * not look like a server without users).
 */
export async function withStateCatalog<T>(ctx: CommandContext, create: boolean, fn: (catalog: Catalog, stateDir: string) => Promise<T>): Promise<T> {
  const url = ctx.values['catalog'];
  if (typeof url === 'string' && url !== '') {
    if (ctx.values['state-dir'] !== undefined) throw new LifeboatError('LFB_ERR_USAGE', '--catalog and --state-dir exclude each other');
    const catalog = await openCatalog(url, { clock: ctx.service.clock });
    try {
      return await fn(catalog, stateDirOf(ctx));
    } finally {
      await catalog.close();
    }
  }
  const stateDir = stateDirOf(ctx);
  if (!create) {
    const found = await stat(stateDir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    if (found === undefined || !found.isDirectory())
      throw new LifeboatError(
        'LFB_ERR_INVALID_ARGUMENT',
        `no state folder ${stateDir}: give --state-dir (or LIFEBOAT_STATE_DIR); lifeboat user add makes one`,
        {
          details: { stateDir },
        },
      );
  }
  const catalog = await openCatalog(stateDir, { clock: ctx.service.clock });
  try {
    return await fn(catalog, stateDir);
  } finally {
    await catalog.close();
  }
}
