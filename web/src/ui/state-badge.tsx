/** A run's state (or a point's health) as a coloured word: colour is never the only sign, the word is there too. */
export function StateBadge({ state }: { state: string }) {
  return <span class={`badge badge-${state}`}>{state}</span>;
}
