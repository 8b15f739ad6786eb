import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { LifeboatError } from '../../core/errors.js';
import { JOB_NAME_RE } from '../../core/ids.js';
import { createLogger } from '../../core/log.js';
import { optionalString, type Command } from '../command.js';

export const mover: Command = {
  name: 'mover',
  usage: 'mover --server <url> [--server <url>…] --token <token> [--name <name>] [--group <group>] [--max-tasks N] [--ca-cert <pem>]',
  summary: "a data mover: run on another host the server's backups of the jobs that name it (job set --mover), until stopped",
  positionals: [],
  options: {
    server: {
      type: 'string',
      multiple: true,
      description:
        "the server's API, as serve prints it (https://host:9443/api/v1); once per server when several share a catalog (the one running the scheduler is used)",
    },
    token: {
      type: 'string',
      description: "an API token (lifeboat token create) of a user of role mover named as --name (or an operator's); or LIFEBOAT_TOKEN",
      defaultText: '$LIFEBOAT_TOKEN',
    },
    name: { type: 'string', description: 'the name jobs give to be run here (job set --mover <name>)', defaultText: 'this host name' },
    group: { type: 'string', description: 'a group of movers that reach the same disks: a job naming it runs on any of them', defaultText: 'none' },
    'max-tasks': { type: 'string', description: 'backups run here at once', defaultText: '2' },
    'ca-cert': { type: 'string', description: "a certificate (PEM) to trust for the server's (a self-signed server)", defaultText: 'the system’s' },
  },
  async run(ctx) {
    const servers = (ctx.values['server'] as string[] | undefined) ?? [];
    if (servers.length === 0) throw new LifeboatError('LFB_ERR_USAGE', 'give --server (the API URL serve prints), once per server');
    for (const server of servers)
      if (!/^https?:\/\//.test(server)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--server must be an http(s) URL, not "${server}"`);
    const token = optionalString(ctx, 'token') ?? process.env['LIFEBOAT_TOKEN'];
    if (token === undefined || token === '')
      throw new LifeboatError('LFB_ERR_USAGE', 'give --token (or LIFEBOAT_TOKEN): an API token of a user of role mover named as this mover');
    const name = optionalString(ctx, 'name') ?? hostname().split('.')[0]!;
    const group = optionalString(ctx, 'group');
    for (const [flag, v] of [
      ['--name', name],
      ['--group', group],
    ] as const)
      if (v !== undefined && !JOB_NAME_RE.test(v))
        throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag} "${v}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    const maxText = optionalString(ctx, 'max-tasks') ?? '2';
    const maxTasks = Number(maxText);
    if (!/^\d+$/.test(maxText) || maxTasks < 1 || maxTasks > 64)
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--max-tasks must be a whole number from 1 to 64, not "${maxText}"`);
    const caPath = optionalString(ctx, 'ca-cert');
    const ca = caPath === undefined ? undefined : await readFile(caPath);
    // The service layer loads only for this command.
    const { runMover } = await import('../../service/movers/mover.js');
    process.stderr.write(`lifeboat: data mover ${name}${group ? ` (group ${group})` : ''} polling ${servers.join(', ')}, ${maxTasks} backups at once\n`);
    await runMover({
      servers,
      token,
      name,
      group,
      maxTasks,
      ca,
      service: ctx.service,
      logger: createLogger(),
      signal: ctx.signal,
      onEvent: (line) => process.stderr.write(`lifeboat: ${line}\n`),
    });
  },
};
