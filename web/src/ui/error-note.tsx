import { ApiError } from '../api';

/** An error as the user reads it: the API's message, with its code for the documentation (docs/errors.md). */
export function ErrorNote({ error }: { error: unknown }) {
  if (error === null || error === undefined) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : undefined;
  return (
    <div class="error-note" role="alert">
      <span>{message}</span>
      {code && <code class="error-code">{code}</code>}
    </div>
  );
}
