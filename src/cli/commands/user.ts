import { addUser, changeUser, checkRole, checkUserName, deleteUser } from '../../auth/index.js';
import { LifeboatError } from '../../core/errors.js';
import { JSON_OPTION, requireString, type Command } from '../command.js';
import { readNewPassword } from '../password-input.js';
import { CATALOG_OPTION, STATE_DIR_OPTION, withStateCatalog } from '../state-dir.js';

export const userAdd: Command = {
  name: 'user add',
  usage: 'user add <name> --role admin|operator|viewer|mover [--state-dir <dir> | --catalog <url>] [--password-stdin] [--json]',
  summary: "add a user of the server's HTTP API and console",
  positionals: ['name'],
  options: {
    role: {
      type: 'string',
      description:
        'viewer: sees everything, changes nothing; operator: also runs jobs, restores, instant sessions; admin: also jobs, repositories, users; mover: a data mover host named as this user, in no group (lifeboat mover --name <this user>), nothing else',
    },
    'state-dir': STATE_DIR_OPTION,
    catalog: CATALOG_OPTION,
    'password-stdin': {
      type: 'boolean',
      description: 'read the password from standard input (one trailing line end is dropped)',
      defaultText: 'ask twice at the terminal, without echo',
    },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const name = ctx.args[0]!;
    // Name and role are checked before the password is asked for.
    checkUserName(name);
    const role = checkRole(requireString(ctx, 'role'));
    const password = await readNewPassword(name, ctx.values['password-stdin'] === true);
    const user = await withStateCatalog(ctx, true, (catalog) => addUser(catalog, name, role, password, ctx.service.clock));
    ctx.out(
      ctx.values['json'] === true ? JSON.stringify({ name: user.name, role: user.role, createdAt: user.createdAt }) : `added user ${user.name} (${user.role})`,
    );
  },
};

export const userSet: Command = {
  name: 'user set',
  usage: 'user set <name> [--role admin|operator|viewer|mover] [--password | --password-stdin] [--state-dir <dir> | --catalog <url>] [--json]',
  summary: "change a user's role or password (a new password ends their console logins; API tokens stay)",
  positionals: ['name'],
  options: {
    role: { type: 'string', description: "the new role (counts from the user's next request)", defaultText: 'unchanged' },
    password: { type: 'boolean', description: 'ask for a new password twice at the terminal, without echo' },
    'password-stdin': { type: 'boolean', description: 'read the new password from standard input (one trailing line end is dropped)' },
    'state-dir': STATE_DIR_OPTION,
    catalog: CATALOG_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const name = ctx.args[0]!;
    checkUserName(name);
    const roleText = ctx.values['role'];
    const role = typeof roleText === 'string' ? checkRole(roleText) : undefined;
    const fromStdin = ctx.values['password-stdin'] === true;
    const newPassword = fromStdin || ctx.values['password'] === true;
    if (role === undefined && !newPassword)
      throw new LifeboatError('LFB_ERR_USAGE', 'user set: give --role, --password (asked at the terminal) or --password-stdin');
    // The user must exist before a password is asked for.
    await withStateCatalog(ctx, false, async (catalog) => {
      if (!(await catalog.getUser(name))) throw new LifeboatError('LFB_ERR_USER_NOT_FOUND', `no user ${name}`, { details: { user: name } });
    });
    const password = newPassword ? await readNewPassword(name, fromStdin) : undefined;
    const user = await withStateCatalog(ctx, false, (catalog) => changeUser(catalog, name, { role, password }));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ name: user.name, role: user.role, passwordChanged: password !== undefined }));
      return;
    }
    const what = [...(role !== undefined ? [`role ${user.role}`] : []), ...(password !== undefined ? ['password (its console logins ended)'] : [])];
    ctx.out(`changed user ${user.name}: ${what.join(', ')}`);
  },
};

export const userList: Command = {
  name: 'user list',
  usage: 'user list [--state-dir <dir> | --catalog <url>] [--json]',
  summary: "list the server's users with their roles",
  positionals: [],
  options: { 'state-dir': STATE_DIR_OPTION, catalog: CATALOG_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const users = await withStateCatalog(ctx, false, (catalog) => catalog.listUsers());
    const shown = users.map((u) => ({ name: u.name, role: u.role, createdAt: u.createdAt }));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(shown, null, 2));
      return;
    }
    if (shown.length === 0) {
      ctx.out('no users (lifeboat user add <name> --role admin adds one)');
      return;
    }
    const width = Math.max(4, ...shown.map((u) => u.name.length));
    ctx.out(`${'NAME'.padEnd(width)}  ${'ROLE'.padEnd(8)}  CREATED`);
    for (const u of shown) ctx.out(`${u.name.padEnd(width)}  ${u.role.padEnd(8)}  ${u.createdAt}`);
  },
};

export const userDelete: Command = {
  name: 'user delete',
  usage: 'user delete <name> [--state-dir <dir> | --catalog <url>] [--json]',
  summary: 'delete a user with their API tokens and console sessions',
  positionals: ['name'],
  options: { 'state-dir': STATE_DIR_OPTION, catalog: CATALOG_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const name = ctx.args[0]!;
    const r = await withStateCatalog(ctx, false, (catalog) => deleteUser(catalog, name));
    ctx.out(ctx.values['json'] === true ? JSON.stringify({ name, ...r }) : `deleted user ${name} (${r.tokensRevoked} API token(s) revoked)`);
  },
};
