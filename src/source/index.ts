export * from './raw-disk-source.js';
export { sparseSupport } from './data-extents.js';
export * from './open-source.js';
export * from './nbd-disk-source.js';
export * from './image-source.js';
export { RangeSet } from './range-set.js';
export * from './running-vm-source.js';
