// What the trainer needs from data parallelism, in its own words: one process is the trivial case
// (every call is a no-op), several processes run it over c10d (src/dist). Keeping the trainer on
// this interface keeps its loop the same for 1 and N ranks.
import { Tensor } from '../tensor';
import { TrainConfig } from './config';

export interface DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  /** Rank 0 runs `lead` (data preparation, tokenizer training) while the others wait; then the others
   *  run `follow` (which finds rank 0's work done). A failure on rank 0 fails the others too. */
  leaderFirst<T>(what: string, lead: () => Promise<T>, follow: () => Promise<T>): Promise<T>;
  /** Every rank must train with the same config: a difference is an error naming the keys. */
  checkSameConfig(config: TrainConfig, source: string): Promise<void>;
  /** Rank 0's values into every rank's tensors (initial or restored weights). */
  broadcastFromLeader(tensors: Tensor[]): Promise<void>;
  /** Before the backward of the last micro-batch of a step: its gradients are to be averaged. */
  prepareForBackward(): void;
  /** After that backward: every parameter's gradient is the average over the ranks. */
  finishGradients(): Promise<void>;
  /** In place, the element-wise sum (or max) over the ranks. */
  allReduce(tensors: Tensor[], op: 'sum' | 'max'): Promise<void>;
  /** Whether every rank stops after `completedStep` + at most one more step: a stop requested on any
   *  rank (a signal) reaches all of them at the same step. */
  stopAfter(completedStep: number, requestedHere: boolean): Promise<boolean>;
  /** Waits until every rank got here. */
  barrier(): Promise<void>;
  /** Communication counters for the log (zero for one process). */
  stats(): { waitMs: number; bucketsDuringBackward: number; buckets: number };
  close(): void;
}

export const singleProcess: DataParallel = {
  rank: 0,
  worldSize: 1,
  leaderFirst: (_what, lead) => lead(),
  checkSameConfig: async () => {},
  broadcastFromLeader: async () => {},
  prepareForBackward: () => {},
  finishGradients: async () => {},
  allReduce: async () => {},
  stopAfter: async (_step, requestedHere) => requestedHere,
  barrier: async () => {},
  stats: () => ({ waitMs: 0, bucketsDuringBackward: 0, buckets: 0 }),
  close: () => {},
};
