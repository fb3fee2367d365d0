// One error type for everything that goes wrong between ranks: the rendezvous, a collective, the
// store, the gradient reducer. `code` says which, and a failed collective names the ranks behind it.

export type DistributedErrorCode =
  | 'EADDRINUSE' // rank 0 cannot host the store: the port is taken
  | 'ERR_DIST_UNREACHABLE' // no store at masterAddr:masterPort within the timeout
  | 'ERR_DIST_STORE' // a store call failed
  | 'ERR_DIST_WORLD_SIZE' // ranks disagree on the world size, or too many joined
  | 'ERR_DIST_DUPLICATE_RANK'
  | 'ERR_DIST_JOIN_TIMEOUT' // fewer ranks than the world size joined within the timeout
  | 'ERR_DIST_CONNECT' // the backend could not connect the ranks
  | 'ERR_DIST_BACKEND' // the backend is not in this build
  | 'ERR_DIST_COLLECTIVE' // a collective failed or timed out
  | 'ERR_DIST_DESTROYED' // pending when the group was destroyed
  | 'ERR_DIST_UNUSED_PARAMETER' // a parameter given to GradientReducer got no gradient
  | 'ERR_DIST_REDUCER'
  | 'ERR_DIST_INIT'
  | 'ERR_DIST_OPTIONS';

export class DistributedError extends Error {
  override readonly name = 'DistributedError';
  readonly code: DistributedErrorCode;
  /** the collective that failed ('allReduce', 'barrier', 'allReduce(DDP bucket 3)' ...) */
  readonly collective?: string;
  /** ranks that were alive but had not issued the failed collective */
  readonly notJoinedRanks: number[];
  /** ranks whose heartbeat stopped (dead, stopped, cut off) */
  readonly unresponsiveRanks: number[];
  /** the store itself stopped answering (its host, rank 0 or the launcher's agent, is gone) */
  readonly storeDown: boolean;

  constructor(message: string, code: DistributedErrorCode, details: {
    collective?: string; notJoinedRanks?: number[]; unresponsiveRanks?: number[]; storeDown?: boolean;
  } = {}) {
    super(message);
    this.code = code;
    this.collective = details.collective;
    this.notJoinedRanks = details.notJoinedRanks ?? [];
    this.unresponsiveRanks = details.unresponsiveRanks ?? [];
    this.storeDown = details.storeDown ?? false;
  }
}

interface NativeDistError extends Error {
  code?: string;
  collective?: string;
  notJoinedRanks?: number[];
  unresponsiveRanks?: number[];
  storeDown?: boolean;
}

/** The addon's errors carry their details as properties; anything else passes through. */
export function toDistributedError(error: unknown): unknown {
  if (error instanceof DistributedError || !(error instanceof Error)) return error;
  const e = error as NativeDistError;
  if (typeof e.code === 'string' && (e.code.startsWith('ERR_DIST') || e.code === 'EADDRINUSE')) {
    return new DistributedError(e.message, e.code as DistributedErrorCode, e);
  }
  // A collective that failed inside backward() (the DDP reducer's buckets) surfaces as the
  // autograd engine's error, whose text is ours.
  if (e.message.startsWith('camemberta.dist:') || e.message.includes('\ncamemberta.dist:')) {
    // The details are in the text the addon wrote (native/dist.cc, Monitor::diagnose).
    const ranks = (pattern: RegExp) => [...e.message.matchAll(pattern)].map((m) => Number(m[1]));
    return new DistributedError(e.message, 'ERR_DIST_COLLECTIVE', {
      collective: /camemberta\.dist: (\S+(?: bucket \d+\))?) \(collective #/.exec(e.message)?.[1],
      notJoinedRanks: ranks(/rank (\d+) is alive but has not joined it/g),
      unresponsiveRanks: ranks(/rank (\d+) has sent no heartbeat/g),
      storeDown: e.message.includes('the store (hosted by rank 0'),
    });
  }
  return error;
}

/** Runs `operation`, turning the addon's errors (thrown or rejected) into DistributedError. */
export async function distributed<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw toDistributedError(error);
  }
}
