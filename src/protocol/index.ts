export * from './errors.js';
export * from './checksum.js';
export * from './codec.js';
export * from './wire.js';
