/**
 * The disk seam between instant recovery and the protocols (nbdkit's
 * next_ops, reduced): NFS and NBD serve a BlockDevice and know nothing of
 * backups; only recovery/ stacks a restore point under an overlay.
 */
export interface ReadableDisk {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

export interface BlockDevice extends ReadableDisk {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes every write so far durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
