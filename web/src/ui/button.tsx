import type { ComponentChildren, JSX } from 'preact';
import { canAdminister, canOperate, useMe } from '../session';

type ButtonProps = Omit<JSX.HTMLAttributes<HTMLButtonElement>, 'disabled'> & {
  /**
   * The button changes something on the server. Every such button MUST say
   * so: it is marked data-mutating and disabled for a role that may not
   * (true: operators and admins; 'admin': admins only), with a title saying
   * why. Buttons that only read (refresh, copy, tabs) leave it out.
   */
  mutating?: boolean | 'admin';
  disabled?: boolean;
  /** Shown as busy and disabled while an action runs. */
  busy?: boolean;
  kind?: 'primary' | 'danger' | 'plain';
  type?: 'button' | 'submit';
  children?: ComponentChildren;
};

export function Button({ mutating, disabled, busy, kind = 'plain', type = 'button', children, title, class: cls, ...rest }: ButtonProps) {
  const me = useMe();
  const allowed = mutating === undefined || mutating === false ? true : mutating === 'admin' ? canAdminister(me) : canOperate(me);
  const why = allowed ? undefined : mutating === 'admin' ? 'needs the admin role' : 'needs the operator or admin role';
  return (
    <button
      {...rest}
      type={type}
      class={['btn', `btn-${kind}`, cls].filter(Boolean).join(' ')}
      disabled={disabled === true || busy === true || !allowed}
      aria-busy={busy === true ? 'true' : undefined}
      title={why ?? (title as string | undefined)}
      data-mutating={mutating ? (mutating === 'admin' ? 'admin' : 'operator') : undefined}
    >
      {children}
    </button>
  );
}
