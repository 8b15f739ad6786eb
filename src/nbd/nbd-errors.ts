/** A peer broke the protocol in a way that ends its connection (and only that one). */
export class NbdProtocolError extends Error {}
