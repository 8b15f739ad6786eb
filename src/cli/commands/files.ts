import { resolve } from 'node:path';
import { find, get, list, tar } from '../../files/operations.js';
import { parseGuestPath } from '../../files/paths.js';
import type { FileEntry, Volume } from '../../files/index.js';
import { LifeboatError } from '../../core/errors.js';
import type { Command, CommandContext } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';
import { findThroughServer, getThroughServer, lsThroughServer, tarThroughServer } from '../files-hand-off.js';
import { POINT_OPTION, entryLine, guestPathArg, stderrProgress, volumeLine, withBrowse } from './files-browse.js';

/** The job, repository and point of the command line, as a running server is asked for them. */
function serverRequest(ctx: CommandContext): { repo: string; job: string; point: string } {
  const repo = requireString(ctx, 'repo');
  const point = requireString(ctx, 'point');
  return { repo, job: ctx.args[0]!, point };
}

/** `files ls`'s output, the same whether the point was read here or by a running server. */
function printLs(
  ctx: CommandContext,
  json: boolean,
  pointId: string,
  path: string | undefined,
  r: { volumes?: readonly Volume[]; entries?: readonly FileEntry[] },
): void {
  if (path === undefined) {
    if (json) return ctx.out(JSON.stringify({ point: pointId, volumes: r.volumes }));
    ctx.out(`point ${pointId}:`);
    for (const v of r.volumes ?? []) ctx.out(`  ${volumeLine(v)}`);
    return;
  }
  if (json) return ctx.out(JSON.stringify({ point: pointId, path, entries: r.entries }));
  for (const e of r.entries ?? []) ctx.out(entryLine(e));
}

function printGet(ctx: CommandContext, pointId: string, r: { source: string; type: string }, to: string): void {
  if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ point: pointId, source: r.source, type: r.type, to }));
  ctx.out(`copied ${r.source} (${r.type}) of point ${pointId} → ${to}`);
}

function printFind(ctx: CommandContext, pointId: string, name: string, found: readonly string[]): void {
  if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ point: pointId, name, found }));
  for (const f of found) ctx.out(f);
}

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
    const { repo, ...req } = serverRequest(ctx);
    const served = await lsThroughServer(repo, stderrProgress, { ...req, ...(path !== undefined ? { path } : {}) });
    if (served !== undefined) return printLs(ctx, json, served.pointId, path, served);
    await withBrowse(ctx, async (b) =>
      printLs(ctx, json, b.pointId, path, gp === undefined ? { volumes: b.browse.volumes } : { entries: await list(b.browse, gp) }),
    );
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
    const { repo, ...req } = serverRequest(ctx);
    const request = { ...req, path: guestPathArg(ctx, 1) };
    if (asTar) {
      if ((await tarThroughServer(repo, stderrProgress, request, process.stdout)) !== undefined) return;
    } else {
      const served = await getThroughServer(repo, stderrProgress, request, resolve(to!));
      if (served !== undefined) return printGet(ctx, served.pointId, served, resolve(to!));
    }
    await withBrowse(ctx, async (b) => {
      if (asTar) return tar(b.browse, gp, process.stdout);
      printGet(ctx, b.pointId, await get(b.browse, gp, resolve(to!)), resolve(to!));
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
    if (path !== undefined) parseGuestPath(path);
    const { repo, ...req } = serverRequest(ctx);
    const served = await findThroughServer(repo, stderrProgress, { ...req, name, ...(path !== undefined ? { path } : {}) });
    if (served !== undefined) return printFind(ctx, served.pointId, name, served.found);
    await withBrowse(ctx, async (b) => {
      const starts = path !== undefined ? [parseGuestPath(path)] : b.browse.fsIds().map((fsId) => ({ fsId, path: '/' }));
      const found: string[] = [];
      for (const s of starts) found.push(...(await find(b.browse, s, name)));
      printFind(ctx, b.pointId, name, found);
    });
  },
};
