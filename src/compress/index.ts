export * from './codec.js';
export * from './block-pool.js';
