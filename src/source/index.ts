export * from './raw-disk-source.js';
export { sparseSupport } from './data-extents.js';
