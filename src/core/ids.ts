import { randomBytes, randomUUID } from 'node:crypto';

/** A restore point id: 12 lowercase hex digits, unique within a job. */
export function newPointId(): string {
  return randomBytes(6).toString('hex');
}

export function newUuid(): string {
  return randomUUID();
}

/** 16 raw bytes of a canonical UUID string, for binary headers. */
export function uuidToBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new Error(`not a uuid: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

export function bytesToUuid(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Job names become folder names: keep them portable and unambiguous. */
export const JOB_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
