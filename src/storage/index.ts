export * from './durable-file.js';
export * from './lock-file.js';
export * from './storage.js';
