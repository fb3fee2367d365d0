// Multi-process training: process groups and collectives (process-group.ts), DDP gradient
// averaging (ddp.ts), and the error type they share (errors.ts).
export { initProcessGroup, processGroupOptionsFromEnv } from './process-group';
export type { ProcessGroup, ProcessGroupOptions, ProcessGroupStore, ReduceOp } from './process-group';
export { GradientReducer, broadcastParameters } from './ddp';
export type { GradientReducerOptions, GradientReducerStats } from './ddp';
export { DistributedError, toDistributedError } from './errors';
export type { DistributedErrorCode } from './errors';
