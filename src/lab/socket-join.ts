import type { Socket } from 'node:net';

/**
 * Joins two sockets both ways: pipe() keeps backpressure (a slow reader pauses
 * the writer) and passes an end on (half-close: each side may finish sending
 * and still receive); with both sockets allowing half-open, each closes once
 * both directions are done. An error on either destroys both. Only node:*
 * imports: netns-relay.js, run as a script inside a lab, imports it too.
 */
export function joinSockets(a: Socket, b: Socket): void {
  const fail = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', fail);
  b.on('error', fail);
  a.pipe(b);
  b.pipe(a);
}
