export { Tensor, Generator } from './tensor';
export type { Shape, Device, ScalarOrTensor, ToOptions, BackwardOptions } from './tensor';
export * from './functions';
export { tidy, keep, dispose, liveTensorCount } from './lifetime';
export { saveTensors, loadTensors } from './serialize';
export { aten, callOp, Op } from './ops';
export type { CpuAllocatorStats, MklCpuDispatch } from './native';
export type { DType, FloatDType, IntDType, IndexDType, TypedArrayFor } from './dtype';
export { isFloatingDType, itemSize } from './dtype';
