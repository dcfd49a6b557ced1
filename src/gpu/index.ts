export * from './errors';
export * from './device';
export * from './pool';
export * from './tensor';
export * from './context';
export { preprocess } from './wgsl';
