// What the trainer needs from data parallelism, in its own words: one process is the trivial case
// (every call is a no-op), several processes run it over c10d (src/dist). Keeping the trainer on
// this interface keeps its loop the same for 1 and N ranks.
import { Tensor } from '../tensor';
import { TrainConfig } from './config';

export type StopReason = 'signal' | 'budget';

/** `C`: the config the ranks must agree on (train.js's TrainConfig, finetune.js's FinetuneConfig). */
export interface DataParallel<C = TrainConfig> {
  readonly rank: number;
  readonly worldSize: number;
  /** Rank 0 runs `lead` (data preparation, tokenizer training) while the others wait; then the others
   *  run `follow` (which finds rank 0's work done). A failure on rank 0 fails the others too. */
  leaderFirst<T>(what: string, lead: () => Promise<T>, follow: () => Promise<T>): Promise<T>;
  /** Rank 0 alone runs `lead` (an evaluation) while the others wait, however long it takes; every
   *  rank gets its result, which must survive JSON. A failure on rank 0 fails the others too. */
  leaderDecides<T>(what: string, lead: () => Promise<T>): Promise<T>;
  /** Every rank must train with the same config: a difference is an error naming the keys. */
  checkSameConfig(config: C, source: string): Promise<void>;
  /** The parameters to train: rank 0's values are copied into every rank's (initial or restored
   *  weights), and their gradients are averaged from then on. */
  adoptParameters(parameters: Tensor[]): Promise<void>;
  /** Before the backward of the last micro-batch of a step: its gradients are to be averaged. */
  prepareForBackward(): void;
  /** After that backward: every parameter's gradient is the average over the ranks. */
  finishGradients(): Promise<void>;
  /** In place, the element-wise sum (or max) over the ranks. */
  allReduce(tensors: Tensor[], op: 'sum' | 'max'): Promise<void>;
  /** Whether every rank stops now, and why: a stop requested on any rank (a signal, or rank 0's
   *  time budget) reaches all of them at the same step, at most one step after the request. */
  stopAfter(completedStep: number, requestedHere: StopReason | null): Promise<StopReason | null>;
  /** Waits until every rank got here. */
  barrier(): Promise<void>;
  /** Communication counters for the log (zero for one process). */
  stats(): { waitMs: number; bucketsDuringBackward: number; buckets: number };
  close(): void;
}

export const singleProcess: DataParallel<unknown> = {
  rank: 0,
  worldSize: 1,
  leaderFirst: (_what, lead) => lead(),
  leaderDecides: (_what, lead) => lead(),
  checkSameConfig: async () => {},
  adoptParameters: async () => {},
  prepareForBackward: () => {},
  finishGradients: async () => {},
  allReduce: async () => {},
  stopAfter: async (_step, requestedHere) => requestedHere,
  barrier: async () => {},
  stats: () => ({ waitMs: 0, bucketsDuringBackward: 0, buckets: 0 }),
  close: () => {},
};

// ---- several processes, over c10d ---------------------------------------------------------------

/** What src/dist's process group offers the trainer (structural, so this file stays the trainer's view). */
export interface ProcessGroupLike {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(tensors: Tensor[], op?: 'sum' | 'avg' | 'max' | 'min'): Promise<void>;
  broadcast(tensors: Tensor[], root?: number): Promise<void>;
  barrier(): Promise<void>;
  store: { set(key: string, value: string): Promise<void>; get(key: string): Promise<string>; add(key: string, amount: number): Promise<number> };
}

export interface GradientReducerLike {
  prepareForBackward(): void;
  finish(): Promise<void>;
  readonly stats: { bucketsLaunchedDuringBackward: number; buckets: number; waitMs: number };
}

export interface DataParallelOptions {
  /** Distinguishes the keys of one attempt from those of an earlier one in a store that outlives
   *  restarts (torchrun's agent store): TORCHELASTIC_RESTART_COUNT. */
  attempt: number;
  /** How often a waiting rank looks at the store while rank 0 prepares the data. */
  pollMs?: number;
  /** false: no bucketed reduction during backward, one all-reduce of every gradient after it
   *  (what the overlap buys, measured by bench:dist). */
  overlap?: boolean;
}

export class ConfigMismatchError extends Error {
  override name = 'ConfigMismatchError';
}

/** The trainer's DataParallel over a process group, and a gradient reducer it builds on the parameters. */
export function createDataParallel<C = TrainConfig>(pg: ProcessGroupLike, createReducer: (parameters: Tensor[]) => GradientReducerLike,
  options: DataParallelOptions, differingKeys: (a: C, b: C) => string[]): DataParallel<C> {
  let reducer: GradientReducerLike | null = null;
  let adopted: Tensor[] | null = null;
  const overlap = options.overlap ?? true;
  const reducerOrFail = () => {
    if (!reducer) throw new Error('DataParallel: adoptParameters() first');
    return reducer;
  };
  const key = (name: string) => `camemberta/attempt-${options.attempt}/${name}`;
  const pollMs = options.pollMs ?? 200;
  let waitMs = 0;
  // Takes the call itself, not its promise: a collective may block before it returns one.
  const timed = async <T>(call: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await call();
    } finally {
      waitMs += Date.now() - started;
    }
  };
  let stopRequested: StopReason | null = null;
  // The agreed stop as one store integer: 2 x step + 1 for a signal, 2 x step for the budget.
  let stopCode = 0;
  const reasonOf = (code: number): StopReason => (code % 2 === 1 ? 'signal' : 'budget');
  // Rank 0 runs `lead` and publishes its outcome (and, with `share`, its result); the others wait for it.
  const leaderRuns = async <T>(what: string, lead: () => Promise<T>, share: boolean): Promise<{ leader: true; value: T } | { leader: false; value: string | null }> => {
    const done = key(`lead/${what}`);
    if (pg.rank === 0) {
      try {
        const value = await lead();
        if (share) await pg.store.set(`${done}/value`, JSON.stringify(value ?? null));
        await pg.store.set(`${done}/outcome`, 'ok');
        await pg.store.add(done, 1);
        return { leader: true, value };
      } catch (error) {
        await pg.store.set(`${done}/outcome`, `rank 0 failed in ${what}: ${(error as Error).message}`).catch(() => {});
        await pg.store.add(done, 1).catch(() => {});
        throw error;
      }
    }
    // Not a store get with the collective timeout: preparing a corpus may take hours. Rank 0 dying
    // ends the wait too, as the store (hosted by rank 0 or the launcher's agent) stops answering.
    while ((await pg.store.add(done, 0)) === 0) await new Promise((resolve) => setTimeout(resolve, pollMs));
    const outcome = await pg.store.get(`${done}/outcome`);
    if (outcome !== 'ok') throw new Error(outcome);
    return { leader: false, value: share ? await pg.store.get(`${done}/value`) : null };
  };
  return {
    rank: pg.rank,
    worldSize: pg.worldSize,
    async leaderFirst(what, lead, follow) {
      const ran = await leaderRuns(what, lead, false);
      return ran.leader ? ran.value : follow();
    },
    async leaderDecides<T>(what: string, lead: () => Promise<T>): Promise<T> {
      const ran = await leaderRuns(what, lead, true);
      // Rank 0 too gets the value through JSON, so that every rank holds the same (NaN -> null).
      return JSON.parse(ran.leader ? JSON.stringify(ran.value ?? null) : ran.value!) as T;
    },
    async checkSameConfig(config, source) {
      if (pg.rank === 0) await pg.store.set(key('config'), JSON.stringify(config));
      const reference = JSON.parse(await pg.store.get(key('config'))) as C;
      // output_dir may be spelled differently per node (a relative path); everything else must agree.
      const differing = differingKeys(reference, config).filter((k) => k !== 'output_dir');
      await pg.store.set(key(`config-diff/${pg.rank}`), JSON.stringify(differing));
      const problems: string[] = [];
      for (let r = 1; r < pg.worldSize; r++) {
        const keys = JSON.parse(await pg.store.get(key(`config-diff/${r}`))) as string[];
        if (keys.length) problems.push(`rank ${r} differs from rank 0 in ${keys.join(', ')}`);
      }
      if (problems.length) throw new ConfigMismatchError(`${source}: the ranks were given different configs: ${problems.join('; ')}`);
    },
    async adoptParameters(parameters) {
      await timed(() => pg.broadcast(parameters, 0));
      adopted = parameters;
      if (overlap) reducer = createReducer(parameters);
    },
    prepareForBackward: () => { if (overlap) reducerOrFail().prepareForBackward(); },
    async finishGradients() {
      if (overlap) return timed(() => reducerOrFail().finish());
      if (!adopted) throw new Error('DataParallel: adoptParameters() first');
      const grads = adopted.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      return timed(() => pg.allReduce(grads, 'avg'));
    },
    allReduce: (tensors, op) => timed(() => pg.allReduce(tensors, op)),
    async stopAfter(completedStep, requestedHere) {
      // Rank 0 decides the step every rank stops after (the next one), so that no rank waits in a
      // collective for a rank that has stopped: ranks are at most one step apart (each step's
      // gradient all-reduce needs all of them), so every rank can still reach that step.
      if (requestedHere && !stopRequested) {
        stopRequested = requestedHere;
        if (pg.rank !== 0) await pg.store.add(key('stop-request'), 1);
      }
      if (pg.rank === 0 && stopCode === 0) {
        const signalled = stopRequested === 'signal' || (await pg.store.add(key('stop-request'), 0)) > 0;
        if (signalled || stopRequested === 'budget') {
          stopCode = 2 * (completedStep + 1) + (signalled ? 1 : 0);
          await pg.store.add(key('stop-at'), stopCode);
        }
      }
      if (pg.rank !== 0 && stopCode === 0) stopCode = await pg.store.add(key('stop-at'), 0);
      return stopCode > 0 && completedStep >= Math.floor(stopCode / 2) ? reasonOf(stopCode) : null;
    },
    barrier: () => timed(() => pg.barrier()),
    stats: () => ({ waitMs, bucketsDuringBackward: reducer?.stats.bucketsLaunchedDuringBackward ?? 0, buckets: reducer?.stats.buckets ?? 0 }),
    close: () => {},
  };
}
