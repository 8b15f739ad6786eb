export * from './constants.js';
export * from './checksum.js';
export * from './header.js';
export * from './slot.js';
export * from './block-table.js';
export * from './root.js';
