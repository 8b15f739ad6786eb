export * from './lab-plan.js';
export * from './lab-vm.js';
export * from './leftovers.js';
export * from './network.js';
export * from './surebackup.js';
export * from './types.js';
