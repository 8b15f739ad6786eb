export * from './leftovers.js';
export * from './network.js';
export * from './types.js';
