import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, LifeboatError, type ErrorCode } from '../src/core/errors.js';
import { exitCodeFor } from '../src/cli/exit-codes.js';

test('docs/errors.md documents every error code, with its category and exit code, and no other', async () => {
  const doc = await readFile(fileURLToPath(new URL('../../docs/errors.md', import.meta.url)), 'utf8');
  const rows = [...doc.matchAll(/^\| `(LFB_ERR_[A-Z_]+)` \| (\w+) \| (\d+) \|/gm)].map((m) => ({ code: m[1]!, category: m[2]!, exit: Number(m[3]) }));
  assert.deepEqual(rows.map((r) => r.code).sort(), Object.keys(ERROR_CODES).sort());
  for (const r of rows) {
    assert.equal(r.category, ERROR_CODES[r.code as ErrorCode], `${r.code} category`);
    assert.equal(r.exit, exitCodeFor(new LifeboatError(r.code as ErrorCode, 'x')), `${r.code} exit code`);
  }
});
