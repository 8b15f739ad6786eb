/**
 * A shell pattern matched against one name, as `find -name` does
 * (fnmatch without flags): `*` any run, `?` one character, `[…]` a set
 * (`[!…]` or `[^…]` its complement, ranges, POSIX classes such as
 * `[[:digit:]]`), `\` takes the next character as it is. A leading dot is
 * matched by wildcards too.
 */
const CLASSES: Record<string, string> = {
  alnum: '\\p{L}\\p{N}',
  alpha: '\\p{L}',
  digit: '0-9',
  lower: '\\p{Ll}',
  upper: '\\p{Lu}',
  space: '\\s',
  punct: '\\p{P}\\p{S}',
  xdigit: '0-9A-Fa-f',
  blank: ' \\t',
  cntrl: '\\p{Cc}',
};

/** A character as itself in a regexp (u mode: only syntax characters may be escaped, and `-` inside a set). */
const escapeChar = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
const escapeInSet = (c: string): string => (c === '-' ? '\\-' : escapeChar(c));

/** The bracket expression starting at pattern[i] (the `[`) as a regexp class and the index after it; undefined if it never closes. */
function bracket(chars: string[], start: number): { re: string; next: number } | undefined {
  let i = start + 1;
  let negate = false;
  if (chars[i] === '!' || chars[i] === '^') {
    negate = true;
    i++;
  }
  let body = '';
  let first = true;
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === ']' && !first) return { re: `[${negate ? '^' : ''}${body}]`, next: i + 1 };
    first = false;
    if (c === '[' && chars[i + 1] === ':') {
      const close = chars.indexOf(']', i + 2);
      const name = chars.slice(i + 2, close - 1).join('');
      if (close > 0 && chars[close - 1] === ':' && CLASSES[name] !== undefined) {
        body += CLASSES[name];
        i = close + 1;
        continue;
      }
    }
    if (c === '\\' && i + 1 < chars.length) {
      body += escapeInSet(chars[i + 1]!);
      i += 2;
      continue;
    }
    if (chars[i + 1] === '-' && chars[i + 2] !== undefined && chars[i + 2] !== ']') {
      body += `${escapeInSet(c)}-${escapeInSet(chars[i + 2]!)}`;
      i += 3;
      continue;
    }
    body += escapeInSet(c);
    i++;
  }
  return undefined;
}

export function globMatcher(pattern: string): (name: string) => boolean {
  const chars = [...pattern];
  let re = '';
  for (let i = 0; i < chars.length;) {
    const c = chars[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '\\' && i + 1 < chars.length) re += escapeChar(chars[++i]!);
    else if (c === '[') {
      const b = bracket(chars, i);
      if (b !== undefined) {
        re += b.re;
        i = b.next;
        continue;
      }
      re += '\\[';
    } else re += escapeChar(c);
    i++;
  }
  const compiled = new RegExp(`^${re}$`, 'su');
  return (name) => compiled.test(name);
}
