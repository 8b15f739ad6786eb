import { join } from 'node:path';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { Repository } from '../repository/index.js';
import { DecodedBlockStore, type DecodedStoreStats } from '../repository/decoded-store.js';

/** Disk cache writes that may wait at once for a repository on object storage (see store()). */
const OBJECT_STORE_PENDING_WRITES = 64;

/** Decoded backup blocks kept on local storage (the repository's cache/blocks folder) by default. */
export const DEFAULT_DISK_CACHE_BUDGET = 2 * 1024 * 1024 * 1024;

/** What the caches of decoded blocks hold and how often reads found their block there. */
export interface CacheStats {
  readonly memory: { readonly budgetBytes: number; readonly usedBytes: number; readonly blocks: number; readonly hits: number; readonly misses: number };
  /** null when the disk cache is off or not opened yet: `diskOff` says why. */
  readonly disk: DecodedStoreStats | null;
  readonly diskOff?: string;
}

/**
 * The disk cache of a server's sessions: `<repo>/cache/blocks`, opened with
 * the first session. It stays off for an encrypted repository (it would hold
 * the blocks in the clear) and when its budget is 0; a folder that cannot be
 * opened leaves it off with a warning, and sessions decode from the backup.
 */
export class SessionDiskCache {
  private opening: Promise<DecodedBlockStore | undefined> | undefined;
  private opened: DecodedBlockStore | undefined;
  private problem: string | undefined;

  constructor(
    private readonly repo: Repository,
    readonly budgetBytes: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes < 0) throw new RangeError(`disk cache budget ${budgetBytes} must be a whole number of bytes ≥ 0`);
  }

  /** Why there is no disk cache, or undefined when there may be one. */
  private off(): string | undefined {
    if (this.budgetBytes === 0) return 'its budget is 0';
    if (this.repo.config.encryption !== undefined) return 'the repository is encrypted: the cache would hold its blocks in the clear';
    return this.problem;
  }

  store(): Promise<DecodedBlockStore | undefined> {
    this.opening ??= (async () => {
      if (this.off() !== undefined) return undefined;
      const dir = join(this.repo.hostRoot, 'cache', 'blocks');
      try {
        // A block read from object storage costs a request to read again (a dropped block is written later, decoded
        // again unless the memory cache still holds it): more writes may wait (each holds its decoded block) before one
        // is dropped. With 16, a cold sequential read of a 1 GiB point from radosgw kept 323 of its 662 blocks, and
        // the warm read after it found 49%; with 64 it kept them all.
        const maxPendingWrites = this.repo.storage.hostPath === undefined ? undefined : OBJECT_STORE_PENDING_WRITES;
        this.opened = await DecodedBlockStore.open(dir, this.budgetBytes, {
          clock: this.clock,
          logger: this.logger,
          ...(maxPendingWrites === undefined ? {} : { maxPendingWrites }),
        });
        return this.opened;
      } catch (err) {
        this.problem = `its folder ${dir} could not be opened: ${err instanceof Error ? err.message : String(err)}`;
        this.logger.warn('instant recovery: the disk cache could not be opened; blocks are decoded from the backup each time', { dir, problem: String(err) });
        return undefined;
      }
    })();
    return this.opening;
  }

  stats(): Pick<CacheStats, 'disk' | 'diskOff'> {
    if (this.opened) return { disk: this.opened.stats() };
    return { disk: null, diskOff: this.off() ?? 'no session has opened it yet' };
  }

  /** Waits for the writes under way. */
  async close(): Promise<void> {
    await this.opened?.close();
  }
}
