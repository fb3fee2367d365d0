// Data parallelism as PyTorch's DistributedDataParallel does it, driving the same engine:
// libtorch's c10d::Reducer. Its autograd hooks (on libtorch's threads, where JavaScript cannot
// run) copy each gradient into a flat bucket and start the bucket's all-reduce as soon as the
// bucket is full, while backward goes on computing earlier layers; at the end of backward the
// Reducer waits for the buckets and writes the averaged gradients back into `.grad`.
//
//   await broadcastParameters(pg, params);              // once: every rank starts from rank 0's weights
//   const reducer = new GradientReducer(pg, params, { bucketCapMb: 25 });
//   for (micro of microBatches) {
//     if (micro.isLast) reducer.prepareForBackward();   // only the last micro-batch communicates
//     loss(micro).backward();                           // buckets all-reduce during this call
//   }
//   await reducer.finish();                             // .grad = sum over ranks / worldSize
//
// API: GradientReducer(pg, parameters, { bucketCapMb?, names?, findUnusedParameters? }) with prepareForBackward(outputs?),
// finish(), stats, bucketAssignment, destroy(); broadcastParameters(pg, tensors, root = 0).
//
// Contract:
// - By default every parameter given must receive a gradient in each synchronized backward, on
//   every rank (PyTorch's find_unused_parameters=False, no cost). A parameter without one makes
//   finish() throw a DistributedError naming it (code ERR_DIST_UNUSED_PARAMETER), and the other
//   ranks fail at their timeout. With { findUnusedParameters: true } and
//   prepareForBackward(loss), the Reducer searches the graph from the loss each step (as DDP
//   does): a parameter unused on some ranks counts as a zero gradient there, one unused on every
//   rank keeps its .grad untouched.
// - Gradients are averaged, not summed: each bucket is divided by the world size before the sum
//   (the trainer already divides its loss by the accumulation steps).
// - Micro-batches before the last one accumulate into `.grad` locally and communicate nothing;
//   the synchronized backward reduces the accumulated gradient.
// - backward() itself waits for the last buckets (as in PyTorch), bounded by the group's
//   timeout: a rank that died or hangs makes backward throw a DistributedError-worded Error;
//   `toDistributedError` (errors.ts) turns it into one. finish() never waits on the network.
// - Memory: the Reducer keeps one flat copy of every gradient (its buckets), as DDP does with
//   gradient_as_bucket_view=False; `.grad` stays an ordinary tensor the optimizer may replace.
// - Buckets follow reverse parameter order (gradients arrive roughly last layer first), the first
//   capped at 1 MiB so communication starts early, the others at bucketCapMb (default 25).
import { Tensor, itemSize } from '../tensor';
import { distNative, NativeHandle } from './native';
import { DistributedError, toDistributedError } from './errors';
import { ProcessGroup, nativeGroupOf } from './process-group';

export interface GradientReducerOptions {
  /** bucket size in MiB (default 25, as DDP) */
  bucketCapMb?: number;
  /** parameter names, for error messages */
  names?: string[];
  /** allow parameters without gradient (then prepareForBackward needs the loss); see the header */
  findUnusedParameters?: boolean;
}

export interface GradientReducerStats {
  /** buckets whose all-reduce started while some gradient of that backward was still to come */
  bucketsLaunchedDuringBackward: number;
  buckets: number;
  /** time from the last gradient being ready to the last bucket being reduced: communication not hidden by backward */
  waitMs: number;
  /** synchronized backwards so far */
  synchronizedSteps: number;
}

export class GradientReducer {
  private handle: NativeHandle | null;
  private lastStats: GradientReducerStats;

  constructor(pg: ProcessGroup, parameters: Tensor[], options: GradientReducerOptions = {}) {
    const capMb = options.bucketCapMb ?? 25;
    if (!(capMb > 0) || !Number.isFinite(capMb)) {
      throw new DistributedError(`camemberta.dist: bucketCapMb must be a positive number, got ${String(capMb)}`, 'ERR_DIST_OPTIONS');
    }
    if (options.names && options.names.length !== parameters.length) {
      throw new DistributedError(`camemberta.dist: ${options.names.length} names for ${parameters.length} parameters`, 'ERR_DIST_OPTIONS');
    }
    try {
      this.handle = distNative.reducerNew(nativeGroupOf(pg), parameters.map((p) => p.handle), options.names ?? [],
        Math.max(1, Math.round(capMb * 1024 * 1024)), options.findUnusedParameters ?? false);
    } catch (error) {
      throw toDistributedError(error);
    }
    this.lastStats = { bucketsLaunchedDuringBackward: 0, buckets: distNative.reducerBuckets(this.handle).length, waitMs: 0, synchronizedSteps: 0 };
  }

  private live(): NativeHandle {
    if (this.handle === null) throw new DistributedError('camemberta.dist: the gradient reducer was destroyed', 'ERR_DIST_REDUCER');
    return this.handle;
  }

  /**
   * Call before the backward whose gradients must be averaged (the last micro-batch). `outputs`
   * (the loss) are needed with findUnusedParameters only.
   */
  prepareForBackward(outputs?: Tensor | Tensor[]): void {
    const list = outputs === undefined ? [] : Array.isArray(outputs) ? outputs : [outputs];
    try {
      distNative.reducerPrepare(this.live(), list.map((t) => t.handle));
    } catch (error) {
      throw toDistributedError(error);
    }
  }

  /** After that backward: checks every bucket went out; parameters' .grad then hold the average over ranks. */
  async finish(): Promise<void> {
    try {
      this.lastStats = distNative.reducerFinish(this.live());
    } catch (error) {
      throw toDistributedError(error);
    }
  }

  /** of the last synchronized backward */
  get stats(): GradientReducerStats {
    return { ...this.lastStats };
  }

  /** parameter indices per bucket, in the order the buckets are reduced */
  get bucketAssignment(): number[][] {
    return distNative.reducerBuckets(this.live());
  }

  /** Removes the autograd hooks; the parameters train locally again. */
  destroy(): void {
    if (this.handle === null) return;
    distNative.reducerDestroy(this.handle);
    this.handle = null;
  }
}

/**
 * Makes every rank's tensors equal to root's (initial weights, buffers), in chunks of at most
 * 64 MiB per dtype and device so that a large model needs no second full copy.
 */
export async function broadcastParameters(pg: ProcessGroup, tensors: Tensor[], root = 0): Promise<void> {
  const chunkBytes = 64 * 1024 * 1024;
  const chunks: Tensor[][] = [];
  const open = new Map<string, { list: Tensor[]; bytes: number }>();
  for (const t of tensors) {
    const key = `${t.dtype}@${t.device}`;
    const bytes = t.numel() * itemSize(t.dtype);
    let chunk = open.get(key);
    if (!chunk || (chunk.bytes > 0 && chunk.bytes + bytes > chunkBytes)) {
      chunk = { list: [], bytes: 0 };
      open.set(key, chunk);
      chunks.push(chunk.list);
    }
    chunk.list.push(t);
    chunk.bytes += bytes;
  }
  // One after the other: the ranks must issue the same collectives in the same order, and the
  // chunk list is the same on every rank only if the tensors are.
  for (const chunk of chunks) await pg.broadcast(chunk, root);
}
