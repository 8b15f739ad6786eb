/**
 * The API's data shapes, once: TypeBox schemas are at the same time the
 * JSON Schema fastify validates and serializes with, what the OpenAPI
 * document publishes, and (through Static) the handlers' TypeScript types.
 */

export * from './schemas-common.js';
export * from './schemas-jobs.js';
export * from './schemas-runs.js';
export * from './schemas-recovery.js';
