import { resolve } from 'node:path';
import { callControl, type SessionInfo } from '../../app/index.js';
import { formatBytes } from '../../core/units.js';
import type { Command } from '../command.js';
import { optionalString, requireString } from '../command.js';

export const instantStart: Command = {
  name: 'instant start',
  usage: 'instant start <job> --repo <dir> --point <id|latest> [--name <session>] [--cache-dir <dir>] [--json]',
  summary: 'publish a restore point on the NFS datastore, without restoring it',
  positionals: ['job'],
  options: { repo: { type: 'string' }, point: { type: 'string' }, name: { type: 'string' }, 'cache-dir': { type: 'string' }, json: { type: 'boolean' } },
  async run(ctx) {
    const repo = resolve(requireString(ctx, 'repo'));
    const cacheDir = optionalString(ctx, 'cache-dir');
    const s = await callControl<SessionInfo & { publishMs: number; host: string }>(repo, 'POST', '/sessions', {
      job: ctx.args[0],
      point: requireString(ctx, 'point'),
      name: optionalString(ctx, 'name'),
      cacheDir: cacheDir === undefined ? undefined : resolve(cacheDir),
    });
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(s));
    ctx.out(`session ${s.name}: point ${s.pointId} of ${s.job} published in ${s.publishMs} ms`);
    for (const d of s.disks) ctx.out(`  ${d.name}: ${d.nfsPath} (${formatBytes(d.size)})  nfs://${s.host}${d.nfsPath}`);
    ctx.out(`  VM: ${s.vmx}; writes go to ${s.dir}`);
  },
};

export const instantList: Command = {
  name: 'instant list',
  usage: 'instant list --repo <dir> [--json]',
  summary: 'list instant-recovery sessions',
  positionals: [],
  options: { repo: { type: 'string' }, json: { type: 'boolean' } },
  async run(ctx) {
    const list = await callControl<SessionInfo[]>(resolve(requireString(ctx, 'repo')), 'GET', '/sessions');
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(list, null, 2));
    if (list.length === 0) ctx.out('no sessions');
    for (const s of list) {
      ctx.out(`${s.name}  ${s.state}  job ${s.job} point ${s.pointId}  since ${s.createdAt}${s.problem ? `  (${s.problem})` : ''}`);
      for (const d of s.disks) ctx.out(`  ${d.nfsPath}  ${formatBytes(d.size)}, ${formatBytes(d.writtenBytes)} written`);
    }
  },
};

export const instantStop: Command = {
  name: 'instant stop',
  usage: 'instant stop <session> --repo <dir>',
  summary: 'unpublish a session and discard its writes',
  positionals: ['session'],
  options: { repo: { type: 'string' } },
  async run(ctx) {
    await callControl(resolve(requireString(ctx, 'repo')), 'DELETE', `/sessions/${encodeURIComponent(ctx.args[0]!)}`);
    ctx.out(`stopped ${ctx.args[0]}; its overlay is discarded`);
  },
};
