export * from './wire.js';
export * from './export.js';
export * from './nbd-server.js';
export * from './nbd-errors.js';
export * from './nbd-client.js';
