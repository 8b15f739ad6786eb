import { basename } from 'node:path';
import { LifeboatError, type ErrorCode } from '../core/errors.js';
import { sha256 } from '../format/checksum.js';
import { localStorage, readWholeFile, writeFileAtomic, type Storage } from '../storage/index.js';

/**
 * Small metadata files (repository config, job definition, .vbm) are JSON
 * wrapped with the SHA-256 of their body, written atomically.
 */
export async function writeCheckedJson(path: string, body: unknown, storage: Storage = localStorage): Promise<void> {
  const text = JSON.stringify(body);
  const doc = { sha256: sha256(Buffer.from(text)).toString('hex'), body };
  await writeFileAtomic(path, Buffer.from(JSON.stringify(doc, null, 2) + '\n'), storage);
}

export async function readCheckedJson<T>(path: string, corruptCode: ErrorCode, storage: Storage = localStorage): Promise<T> {
  const raw = (await readWholeFile(path, storage)).toString('utf8');
  let doc: { sha256?: unknown; body?: unknown };
  try {
    doc = JSON.parse(raw) as typeof doc;
  } catch {
    throw new LifeboatError(corruptCode, `${basename(path)}: not valid JSON; the file is damaged`, { details: { file: path } });
  }
  const text = JSON.stringify(doc.body);
  if (typeof doc.sha256 !== 'string' || text === undefined || sha256(Buffer.from(text)).toString('hex') !== doc.sha256) {
    throw new LifeboatError(corruptCode, `${basename(path)}: checksum mismatch; the file was damaged or edited by hand`, { details: { file: path } });
  }
  return doc.body as T;
}
