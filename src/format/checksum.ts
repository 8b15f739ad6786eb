import { createHash } from 'node:crypto';

/** SHA-256: block data digest (checksum and in-file dedupe key) and metadata checksum. */
export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export const DIGEST_SIZE = 32;
export const ZERO_DIGEST = Buffer.alloc(DIGEST_SIZE);
