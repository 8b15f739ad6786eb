import { folderRepositoryRoot } from '../../repository/location.js';
import { JSON_OPTION, REPO_OPTION, requireString, type Command } from '../command.js';
import { CATALOG_OPTION, STATE_DIR_OPTION, withStateCatalog } from '../state-dir.js';

export const catalogRebuild: Command = {
  name: 'catalog rebuild',
  usage: 'catalog rebuild --repo <dir> [--state-dir <dir> | --catalog <url>] [--json]',
  summary: "remake the catalog's jobs and points of a repository from its files (runs are kept)",
  positionals: [],
  options: {
    repo: REPO_OPTION,
    'state-dir': STATE_DIR_OPTION,
    catalog: CATALOG_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    // The catalog is the server's, and a server serves repositories in folders: one on S3 is refused, not looked for as a folder.
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'catalog rebuild');
    // The service layer (the API's point builder) loads only for this command.
    const { rebuildCatalog } = await import('../../service/catalog-sync.js');
    const r = await withStateCatalog(ctx, false, (catalog) => rebuildCatalog(catalog, ctx.service, repo));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ repo: r.repo, jobs: r.jobs, points: r.points, removed: r.removed }));
      return;
    }
    ctx.out(`catalog of ${r.repo}: ${r.jobs} job${r.jobs === 1 ? '' : 's'}, ${r.points} point${r.points === 1 ? '' : 's'} recorded from the repository`);
    if (r.removed.length > 0)
      ctx.out(`removed ${r.removed.length} job${r.removed.length === 1 ? '' : 's'} the repository no longer has: ${r.removed.join(', ')}`);
  },
};
