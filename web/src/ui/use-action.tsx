import { useState } from 'preact/hooks';

/** What useAction gives: whether the action runs, its last error, and the way to run it. */
export interface Action {
  readonly busy: boolean;
  readonly error: unknown;
  /** Runs `work` with busy set and the previous error cleared; a failure becomes `error` (shown by ErrorNote), never a rejection. */
  run(work: () => Promise<void>): Promise<void>;
}

/** One button's or form's call to the API: busy while it runs, its error kept for the page to show. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const run = async (work: () => Promise<void>): Promise<void> => {
    setBusy(true);
    setError(undefined);
    try {
      await work();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}
