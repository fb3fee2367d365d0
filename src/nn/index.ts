export { Module, Parameter, StateDictError, describeResult } from './module';
export type { LoadStateDictResult, LoadStateDictOptions } from './module';
export { Linear, Embedding, LayerNorm, Dropout, Conv1d } from './layers';
export { initWeights, normal_, truncatedNormal_ } from './init';
export type { InitOptions } from './init';
