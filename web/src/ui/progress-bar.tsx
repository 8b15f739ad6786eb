import { percent } from '../format';

/** A progress bar screen readers read (role=progressbar with its value); the text beside it says the same. */
export function ProgressBar({ value, max, label, text }: { value: number; max: number; label: string; text?: string }) {
  const clamped = Math.max(0, Math.min(value, max));
  const fraction = max > 0 ? clamped / max : 0;
  return (
    <div class="progress">
      <div
        class="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={max}
        aria-valuenow={clamped}
        aria-valuetext={percent(clamped, max)}
      >
        <div class="progress-fill" style={{ width: `${(fraction * 100).toFixed(2)}%` }} />
      </div>
      <span class="progress-text">{text ?? percent(clamped, max)}</span>
    </div>
  );
}
