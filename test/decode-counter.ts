import { BlockWorkerPool } from '../src/compress/block-pool.js';

/**
 * Counts the blocks the worker pools decode from the backup (a block a cache
 * holds is not decoded again), from now until `restore()`.
 */
export function countDecodes(): { count: number; restore: () => void } {
  const decode = BlockWorkerPool.prototype.decode;
  const counter = {
    count: 0,
    restore: (): void => {
      BlockWorkerPool.prototype.decode = decode;
    },
  };
  BlockWorkerPool.prototype.decode = function (this: BlockWorkerPool, ...args: Parameters<typeof decode>) {
    counter.count += 1;
    return decode.apply(this, args);
  };
  return counter;
}
