import type { Readable } from 'node:stream';

/**
 * Calls `onValue` with each line of `stream` parsed as JSON (one value per
 * line, as the spawner and its clients speak), a line split across chunks
 * (or a character split across them) included. A line that is not JSON goes
 * to `onBad`, and reading goes on.
 */
export function readJsonLines(stream: Readable, onValue: (value: unknown) => void, onBad: (line: string, err: unknown) => void): void {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    buffered += text;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        onBad(line, err);
        continue;
      }
      onValue(value);
    }
  });
}
