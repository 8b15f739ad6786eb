import type { RunRecord } from '../../catalog/catalog.js';
import type { Logger } from '../../core/log.js';

/** Waits before the second, third and fourth try. */
export const WEBHOOK_RETRY_DELAYS_MS = [1_000, 5_000, 30_000] as const;
const TIMEOUT_MS = 10_000;

/** What the server POSTs to a job's webhook when one of its runs ends. */
export interface RunEndedEvent {
  readonly event: 'run.ended';
  readonly run: RunRecord;
}

/**
 * POSTs the ended run to `url` as JSON. A network error, a timeout, a 429 or
 * a 5xx is tried again after each of `delaysMs`; another 4xx is the
 * receiver's final answer. Never throws: the outcome is logged.
 */
export async function postRunEnded(
  url: string,
  run: RunRecord,
  logger: Logger,
  delaysMs: readonly number[] = WEBHOOK_RETRY_DELAYS_MS,
): Promise<{ delivered: boolean; attempts: number }> {
  const body = JSON.stringify({ event: 'run.ended', run } satisfies RunEndedEvent);
  // The URL may carry a secret in its path or query: the log names the host only.
  const where = { host: new URL(url).host, run: run.id, job: run.job };
  for (let attempt = 1; ; attempt++) {
    let problem: string;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'lifeboat' },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      await res.body?.cancel();
      if (res.ok) {
        logger.debug('service: webhook delivered', { ...where, status: res.status, attempt });
        return { delivered: true, attempts: attempt };
      }
      problem = `HTTP ${res.status}`;
      if (res.status < 500 && res.status !== 429) {
        logger.warn('service: webhook refused the run', { ...where, status: res.status });
        return { delivered: false, attempts: attempt };
      }
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
    const delay = delaysMs[attempt - 1];
    if (delay === undefined) {
      logger.warn('service: webhook not delivered', { ...where, attempts: attempt, problem });
      return { delivered: false, attempts: attempt };
    }
    logger.info('service: webhook failed, trying again', { ...where, attempt, problem, inMs: delay });
    await new Promise((r) => setTimeout(r, delay).unref());
  }
}
