import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * Sealing of stored bytes with AES-256-GCM: `nonce (12) · ciphertext · tag (16)`.
 * The nonce is random per call (96 bits from the OS generator): nothing about
 * it is kept in a counter, so no crash, restore of a repository from a copy or
 * two processes writing at once can ever reuse one (docs/design.md §Encryption).
 * `aad` binds the sealed bytes to what names them (a block's keyed digest).
 */
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** The two sub-keys every sealed file is read and written with. */
export interface BlockKeys {
  /** The key file's id (UUID): recorded in each sealed file's header. */
  readonly keyId: string;
  /** AES-256-GCM key for blocks, roots and key wrapping of nothing else. */
  readonly seal: Uint8Array;
  /** HMAC-SHA-256 key of the block digests (dedupe and change detection). */
  readonly mac: Uint8Array;
}

export function sealBytes(key: Uint8Array, plain: Uint8Array, aad?: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  if (aad !== undefined) c.setAAD(aad);
  const body = c.update(plain);
  const tail = c.final();
  const out = Buffer.allocUnsafeSlow(NONCE_BYTES + body.length + tail.length + TAG_BYTES);
  nonce.copy(out, 0);
  body.copy(out, NONCE_BYTES);
  tail.copy(out, NONCE_BYTES + body.length);
  c.getAuthTag().copy(out, out.length - TAG_BYTES);
  return out;
}

/** The plaintext, or null when the tag does not match (tampered, damaged, or another key). */
export function openBytes(key: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Buffer | null {
  if (sealed.length < SEAL_OVERHEAD) return null;
  const s = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  try {
    const d = createDecipheriv('aes-256-gcm', key, s.subarray(0, NONCE_BYTES));
    if (aad !== undefined) d.setAAD(aad);
    d.setAuthTag(s.subarray(s.length - TAG_BYTES));
    const body = d.update(s.subarray(NONCE_BYTES, s.length - TAG_BYTES));
    const tail = d.final();
    return tail.length === 0 ? body : Buffer.concat([body, tail]);
  } catch {
    return null;
  }
}

/** The digest of a block in an encrypted repository: HMAC-SHA-256 under the digest key, so it says nothing of the plaintext. */
export function keyedDigest(mac: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', mac).update(data).digest();
}
