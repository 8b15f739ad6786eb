/**
 * Waits for every close to finish, then reports the first failure: a close
 * that fails never leaves the others running or their files open.
 */
export async function closeAll(closing: readonly Promise<void>[]): Promise<void> {
  const settled = await Promise.allSettled(closing);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
}
