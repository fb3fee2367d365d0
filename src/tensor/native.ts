// Loads the compiled addon (build/Release, or a prebuild) and types its raw surface. Only
// src/tensor/ talks to this object; everything above uses the typed Tensor API.
import * as path from 'path';
import * as fs from 'fs';
import { packageRoot } from '../package-root';
import type { ProfilerEvents } from './profiler';

export interface CpuAllocatorStats {
  /** bytes held in free blocks for reuse */
  cachedBytes: number;
  /** the most the cache holds: CAMEMBERTA_CPU_CACHE_MB, or by default an eighth of the host's
   * (or cgroup's) memory divided among LOCAL_WORLD_SIZE processes, at most 4 GiB */
  capBytes: number;
  /** large allocations served from the cache / from the system */
  hits: number;
  misses: number;
  /** cached blocks released, oldest first, to make room under the cap */
  evictions: number;
  /** allocations the system refused, retried after releasing the whole cache */
  emptiedToRetry: number;
}

/** How Intel MKL (linked into libtorch, behind fp32 matmul on CPU) picks its code path: native/mkl.cc. */
export interface MklCpuDispatch {
  /** 'features' (default): MKL's fast paths wherever the CPU has AVX2 + FMA, whatever the vendor;
   * 'vendor' (CAMEMBERTA_MKL_CPU=vendor): MKL's own rule, fast paths on GenuineIntel only */
  mode: 'features' | 'vendor';
  /** the cpuid vendor string (GenuineIntel, AuthenticAMD, ...; empty off x86) */
  vendor: string;
  avx2: boolean;
  avx512: boolean;
  /** what our mkl_serv_intel_cpu_true() answers MKL: 1 lets it take the fast paths */
  intelCpuTrue: 0 | 1;
  /** how many times MKL has called our mkl_serv_intel_cpu_true() (more than 0: MKL calls ours) */
  queries: number;
  /** MKL's chosen code path (mkl_serv_cpu_detect(): 0 the generic SSE2 path, higher for newer ISAs),
   * or null when libtorch carries no MKL */
  mklCodePath: number | null;
}

export interface NativeAddon {
  dispose(handle: number): void;
  liveTensorCount(): number;
  setMemoryReporting(enabled: boolean): void;
  reportTensorMemory(handle: number): void;
  /** bumped by every op that may change a tensor's shape, strides or dtype in place */
  metadataEpoch: Uint32Array;
  fromBuffer(bytes: ArrayBufferView, dtype: number, shape: number[], device?: string): number;
  toBuffer(handle: number): ArrayBuffer;
  shape(handle: number): number[];
  strides(handle: number): number[];
  dtype(handle: number): number;
  device(handle: number): string;
  item(handle: number): number | boolean;
  isContiguous(handle: number): boolean;
  requiresGrad(handle: number): boolean;
  setRequiresGrad(handle: number, value: boolean): void;
  isLeaf(handle: number): boolean;
  grad(handle: number): number;
  setGrad(handle: number, grad: number): void;
  backward(outputs: number[], grads: (number | null)[] | null, retainGraph: boolean, createGraph: boolean): void;
  autogradGrad(outputs: number[], inputs: number[], gradOutputs: (number | null)[] | null,
    retainGraph: boolean, createGraph: boolean, allowUnused: boolean): number[];
  isGradEnabled(): boolean;
  setGradEnabled(enabled: boolean): void;
  manualSeed(seed: number | bigint): void;
  newGenerator(device: string, seed: number | bigint): number;
  generatorSeed(handle: number, seed?: number | bigint): bigint | undefined;
  generatorState(handle: number, state?: number): number | undefined;
  disposeGenerator(handle: number): void;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  deviceCount(): number;
  synchronize(device?: number): void;
  autocastState(device: 'cpu' | 'cuda'): [boolean, number];
  autocastEnter(device: 'cpu' | 'cuda', enabled: boolean, dtype: number): void;
  autocastExit(device: 'cpu' | 'cuda', enabled: boolean, dtype: number): void;
  findOp(name: string, overload?: string): number;
  opSchema(op: number): string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  callOp(op: number, ...args: any[]): any;
  saveTensors(path: string, names: string[], handles: number[]): void;
  cpuAllocatorStats(): CpuAllocatorStats | null;
  emptyCpuCache(): void;
  mklCpuDispatch(): MklCpuDispatch;
  profilerStart(cuda: boolean): void;
  profilerStop(keep?: boolean): ProfilerEvents | undefined;
  profilerActive(): boolean;
  builtWithCuda: boolean;
  torchVersion: string;
}

function load(): NativeAddon {
  const root = packageRoot();
  try {
    // build/Release also holds camemberta_sentencepiece.node (the tokenizer's addon), and
    // node-gyp-build takes the first .node file there: name ours. node-gyp-build remains for
    // prebuilds/<platform>-<arch>/.
    const built = path.join(root, 'build', 'Release', 'camemberta.node');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    if (fs.existsSync(built)) return require(built) as NativeAddon;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('node-gyp-build')(root) as NativeAddon;
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(`camemberta: the native addon could not be loaded (${message}).\n` +
      'Build it with `npm run build:native` (it needs libtorch: see README, "How libtorch is found").');
  }
}

export const native: NativeAddon = load();
