export * from './errors.js';
export * from './clock.js';
export * from './ids.js';
export * from './log.js';
export * from './crash-point.js';
export * from './units.js';
export * from './listen.js';
export * from './step-times.js';
