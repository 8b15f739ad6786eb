import { createToken, revokeToken } from '../../auth/index.js';
import { JSON_OPTION, optionalString, requireString, type Command } from '../command.js';
import { CATALOG_OPTION, STATE_DIR_OPTION, withStateCatalog } from '../state-dir.js';

export const tokenCreate: Command = {
  name: 'token create',
  usage: 'token create --user <name> [--name <label>] [--state-dir <dir> | --catalog <url>] [--json]',
  summary: 'make an API token for a user and print it (once: only its hash is kept)',
  positionals: [],
  options: {
    user: { type: 'string', description: 'the user the token acts as (with their role)' },
    name: { type: 'string', description: 'a label to tell tokens apart in token list (e.g. the script using it)', defaultText: 'none' },
    'state-dir': STATE_DIR_OPTION,
    catalog: CATALOG_OPTION,
    json: { type: 'boolean', description: 'print the token with its id, user, label and time as JSON', defaultText: 'the token alone on one line' },
  },
  async run(ctx) {
    const user = requireString(ctx, 'user');
    const { token, record } = await withStateCatalog(ctx, false, (catalog) => createToken(catalog, user, optionalString(ctx, 'name') ?? '', ctx.service.clock));
    // The token alone on stdout, so that TOKEN=$(lifeboat token create …) works.
    ctx.out(ctx.values['json'] === true ? JSON.stringify({ id: record.id, user: record.user, name: record.name, createdAt: record.createdAt, token }) : token);
  },
};

export const tokenList: Command = {
  name: 'token list',
  usage: 'token list [--user <name>] [--state-dir <dir> | --catalog <url>] [--json]',
  summary: 'list API tokens (ids, users, labels, last use; never the tokens)',
  positionals: [],
  options: {
    user: { type: 'string', description: "only this user's tokens", defaultText: 'every user' },
    'state-dir': STATE_DIR_OPTION,
    catalog: CATALOG_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const user = optionalString(ctx, 'user');
    const tokens = await withStateCatalog(ctx, false, (catalog) => catalog.listTokens(user));
    const shown = tokens.map((t) => ({ id: t.id, user: t.user, name: t.name, createdAt: t.createdAt, lastUsedAt: t.lastUsedAt }));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(shown, null, 2));
      return;
    }
    if (shown.length === 0) {
      ctx.out('no API tokens');
      return;
    }
    const userWidth = Math.max(4, ...shown.map((t) => t.user.length));
    const nameWidth = Math.max(4, ...shown.map((t) => t.name.length));
    ctx.out(`${'ID'.padEnd(8)}  ${'USER'.padEnd(userWidth)}  ${'NAME'.padEnd(nameWidth)}  ${'CREATED'.padEnd(24)}  LAST USED`);
    for (const t of shown)
      ctx.out(`${t.id}  ${t.user.padEnd(userWidth)}  ${(t.name || '-').padEnd(nameWidth)}  ${t.createdAt.padEnd(24)}  ${t.lastUsedAt ?? 'never'}`);
  },
};

export const tokenRevoke: Command = {
  name: 'token revoke',
  usage: 'token revoke <id> [--state-dir <dir> | --catalog <url>] [--json]',
  summary: 'revoke an API token by its id (token list shows them): it stops working at once',
  positionals: ['id'],
  options: { 'state-dir': STATE_DIR_OPTION, catalog: CATALOG_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const id = ctx.args[0]!;
    const revoked = await withStateCatalog(ctx, false, (catalog) => revokeToken(catalog, id));
    ctx.out(ctx.values['json'] === true ? JSON.stringify({ id, user: revoked.user, name: revoked.name }) : `revoked API token ${id} of ${revoked.user}`);
  },
};
