import { readFile } from 'node:fs/promises';
import { LifeboatError } from '../../core/errors.js';
import { askPassword } from '../../crypto/index.js';
import { Repository } from '../../repository/repository.js';
import { changeRepositoryPassword, readKeyFile } from '../../repository/repo-keys.js';
import type { Command, CommandContext } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString } from '../command.js';
import { newRepositoryPassword } from '../repo-password.js';

async function openEncrypted(ctx: CommandContext): Promise<Repository> {
  const repo = await Repository.open(String(ctx.values['repo']), { locked: true });
  if (repo.config.encryption === undefined)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${repo.root} is not encrypted (made without repo init --encrypt)`);
  return repo;
}

export const repoPasswd: Command = {
  name: 'repo passwd',
  usage: 'repo passwd --repo <dir> [--password-file F | --recovery-key-file F] [--new-password-file F]',
  summary: "change an encrypted repository's password (the key is re-wrapped; no data is rewritten)",
  positionals: [],
  options: {
    repo: REPO_OPTION,
    'recovery-key-file': {
      type: 'string',
      description: 'unlock with the recovery key printed at init (in this file) instead of the current password',
      defaultText: 'the current password (--password-file, LIFEBOAT_PASSWORD_FILE or a prompt)',
    },
    'new-password-file': { type: 'string', description: 'the new password, in this file', defaultText: 'typed twice on a terminal' },
  },
  async run(ctx) {
    const repo = await openEncrypted(ctx);
    const enc = repo.config.encryption!;
    const rkFile = optionalString(ctx, 'recovery-key-file');
    const secret = rkFile !== undefined ? { recoveryKey: (await readFile(rkFile, 'utf8')).trim() } : { password: await askPassword(`repository ${repo.root}`) };
    const newPassword = await newRepositoryPassword(optionalString(ctx, 'new-password-file'), false);
    await changeRepositoryPassword(repo.root, enc, secret, newPassword, repo.storage);
    ctx.out(`password of ${repo.root} changed (key ${enc.keyId} re-wrapped; the old password no longer opens it)`);
  },
};

export const repoKeyExport: Command = {
  name: 'repo key export',
  usage: 'repo key export --repo <dir> [--json]',
  summary: "print an encrypted repository's key file (the data key wrapped by the password and the recovery key): keep a copy apart from the repository",
  positionals: [],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const repo = await openEncrypted(ctx);
    const file = await readKeyFile(repo.root, repo.config.encryption!.keyId, repo.storage);
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify({ keyFile: repo.keyFilePath(), key: file }));
    ctx.out(`# ${repo.keyFilePath()}: restore it there (with lifeboat.json) to open the repository with its password or recovery key`);
    ctx.out(JSON.stringify(file, null, 2));
  },
};
