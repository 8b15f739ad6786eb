export { Button } from './button';
export { Field } from './field';
export { ProgressBar } from './progress-bar';
export { Dialog } from './dialog';
export { ErrorNote } from './error-note';
export { CopyButton } from './copy-button';
export { StateBadge } from './state-badge';
export { useApi, type Loaded } from './use-api';
export { useAction, type Action } from './use-action';
