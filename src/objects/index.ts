export * from './object-store.js';
export * from './local-object-store.js';
export * from './s3-config.js';
export * from './s3-errors.js';
export * from './s3-object-store.js';
export * from './s3-versions.js';
export * from './limiter.js';
