export * from './restore.js';
