/**
 * Runs `fn` over `items` with at most `limit` calls in flight; results in order. After a call fails no new call
 * starts, and the first failure (in time; later ones are dropped) is thrown once the calls in flight have ended:
 * nothing runs on behind the caller's back (a scan that failed must not go on opening files while its run cleans up).
 */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  if (!(limit >= 1)) throw new RangeError(`mapLimited needs a limit of at least 1, not ${limit}`);
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
  return results;
}
