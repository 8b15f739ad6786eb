import { resolve } from 'node:path';
import { find, get, list, parseGuestPath, tar } from '../../files/index.js';
import { LifeboatError } from '../../core/errors.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString } from '../command.js';
import { POINT_OPTION, entryLine, guestPathArg, volumeLine, withBrowse } from './files-browse.js';

export const filesLs: Command = {
  name: 'files ls',
  usage: 'files ls <job> --repo <dir> --point <id|latest> [<fs id>:/path | /path] [--json]   (no path: the disks, partitions, LVM volumes and file systems)',
  summary: "list a point's file systems, or a folder in one (libguestfs appliance)",
  positionals: ['job'],
  optionalPositionals: ['path'],
  options: { repo: REPO_OPTION, point: POINT_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const json = ctx.values['json'] === true;
    const path = ctx.args[1];
    const gp = path === undefined ? undefined : parseGuestPath(path);
    await withBrowse(ctx, async (b) => {
      if (gp === undefined) {
        const volumes = b.browse.volumes;
        if (json) return ctx.out(JSON.stringify({ point: b.pointId, volumes }));
        ctx.out(`point ${b.pointId}:`);
        for (const v of volumes) ctx.out(`  ${volumeLine(v)}`);
        return;
      }
      const entries = await list(b.browse, gp);
      if (json) return ctx.out(JSON.stringify({ point: b.pointId, path, entries }));
      for (const e of entries) ctx.out(entryLine(e));
    });
  },
};

export const filesGet: Command = {
  name: 'files get',
  usage: 'files get <job> <fs id>:/path --repo <dir> --point <id|latest> (--to <new local path> | --tar) [--json]',
  summary: 'copy a file or folder out of a point (modes, owners, times, symlinks and holes kept)',
  positionals: ['job', 'path'],
  options: {
    repo: REPO_OPTION,
    point: POINT_OPTION,
    to: { type: 'string', description: 'where the copy goes: a path that does not exist yet' },
    tar: { type: 'boolean', description: 'write a tar (pax, numeric owners, sparse) to standard output instead', defaultText: 'off' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const gp = parseGuestPath(guestPathArg(ctx, 1));
    const to = optionalString(ctx, 'to');
    const asTar = ctx.values['tar'] === true;
    if ((to === undefined) === !asTar) throw new LifeboatError('LFB_ERR_USAGE', 'give either --to <local path> or --tar');
    await withBrowse(ctx, async (b) => {
      if (asTar) return tar(b.browse, gp, process.stdout);
      const r = await get(b.browse, gp, resolve(to!));
      if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ point: b.pointId, source: r.source, type: r.type, to: resolve(to!) }));
      ctx.out(`copied ${r.source} (${r.type}) of point ${b.pointId} → ${resolve(to!)}`);
    });
  },
};

export const filesFind: Command = {
  name: 'files find',
  usage: 'files find <job> --repo <dir> --point <id|latest> --name <glob> [<fs id>:/path] [--json]   (no path: every file system)',
  summary: 'find files by name in a point',
  positionals: ['job'],
  optionalPositionals: ['path'],
  options: {
    repo: REPO_OPTION,
    point: POINT_OPTION,
    name: { type: 'string', description: "a shell pattern matched against each name (find -name), e.g. '*.conf'" },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const name = optionalString(ctx, 'name');
    if (name === undefined) throw new LifeboatError('LFB_ERR_USAGE', '--name <glob> is required');
    const path = ctx.args[1];
    await withBrowse(ctx, async (b) => {
      const starts = path !== undefined ? [parseGuestPath(path)] : b.browse.fsIds().map((fsId) => ({ fsId, path: '/' }));
      const found: string[] = [];
      for (const s of starts) found.push(...(await find(b.browse, s, name)));
      if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ point: b.pointId, name, found }));
      for (const f of found) ctx.out(f);
    });
  },
};
