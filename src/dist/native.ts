// The addon's distributed surface (native/dist.cc), typed. Only src/dist/ uses it.
import { native } from '../tensor/native';

/** An opaque native process group or reducer. */
export type NativeHandle = { readonly __brand: 'camemberta.dist' };

export interface NativeInitOptions {
  rank: number;
  worldSize: number;
  host: string;
  port: number;
  agentStore: boolean;
  timeoutMs: number;
  backend: 'gloo' | 'nccl';
  groupName: string;
}

export interface NativeGroupInfo {
  rank: number;
  worldSize: number;
  backend: string;
  /** collectives issued so far */
  seq: number;
  /** collectives whose promise has not settled */
  pending: number;
  ncclBuilt: boolean;
}

export interface NativeReducerStats {
  buckets: number;
  bucketsLaunchedDuringBackward: number;
  waitMs: number;
  synchronizedSteps: number;
}

export interface DistNative {
  distBuilt: boolean;
  distInit(options: NativeInitOptions): Promise<NativeHandle>;
  distInfo(group: NativeHandle): NativeGroupInfo;
  distAllReduce(group: NativeHandle, tensors: number[], op: string): Promise<void>;
  distBroadcast(group: NativeHandle, tensors: number[], root: number): Promise<void>;
  distAllGather(group: NativeHandle, outputs: number[], input: number): Promise<void>;
  distReduceScatter(group: NativeHandle, output: number, inputs: number[], op: string): Promise<void>;
  distBarrier(group: NativeHandle): Promise<void>;
  distStore(group: NativeHandle, kind: 'set', key: string, value: string): Promise<void>;
  distStore(group: NativeHandle, kind: 'get', key: string): Promise<string>;
  distStore(group: NativeHandle, kind: 'add', key: string, amount: number): Promise<number>;
  distDestroy(group: NativeHandle): void;
  reducerNew(group: NativeHandle, params: number[], names: string[], bucketCapBytes: number, findUnusedParameters: boolean): NativeHandle;
  reducerBuckets(reducer: NativeHandle): number[][];
  reducerPrepare(reducer: NativeHandle, outputs: number[]): void;
  reducerFinish(reducer: NativeHandle): NativeReducerStats;
  reducerDestroy(reducer: NativeHandle): void;
}

export const distNative = native as unknown as DistNative;
