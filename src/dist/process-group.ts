// Process groups over libtorch's c10d: a TCPStore rendezvous, then Gloo (CPU tensors, always) and
// NCCL (CUDA tensors, on CUDA builds that found nccl.h at build time).
//
//   const pg = await initProcessGroup({ rank, worldSize, masterAddr, masterPort, timeoutMs: 60_000 });
//   await pg.allReduce([t], 'avg');   // in place; the event loop keeps running while it travels
//   pg.destroy();
//
// API (the trainer's contract):
//   initProcessGroup(options) -> Promise<ProcessGroup>; processGroupOptionsFromEnv(env, timeoutMs)
//   ProcessGroup: rank, worldSize, backend, allReduce(tensors, op), broadcast(tensors, root),
//     allGather(outputs, input), reduceScatter(output, inputs, op), barrier(), store.{set,get,add},
//     destroy(). Every collective returns a promise; tensors are written in place when it resolves.
//   Errors are DistributedError (errors.ts) with a `code`.
//
// Rendezvous: rank 0 hosts the store at masterAddr:masterPort, or, with useAgentStore (torchrun's
// TORCHELASTIC_USE_AGENT_STORE=True), every rank including 0 connects to the launcher's. Each
// rank then claims its number and the world size: a port in use, a master that cannot be reached,
// ranks that disagree on the world size, a duplicate rank, or fewer ranks than the world size
// within timeoutMs each fail with their own message and code.
//
// Failures after the rendezvous: every collective has timeoutMs (Gloo enforces it; a dead peer's
// closed connection fails sooner). The message names the collective, its sequence number, and
// what the health monitor knew of every other rank: alive but not yet at this collective, no
// heartbeat (dead or stopped), or the store itself gone. A group that has seen a failed collective
// is not usable any more: destroy it and exit (under torchrun, the launcher restarts the job).
//
// Semantics worth knowing:
// - A list of tensors travels as one flat buffer per dtype and device (one collective each); the
//   results land in the caller's tensors when the promise resolves, not before.
// - 'avg' on Gloo is a sum followed by a division (Gloo has no AVG); it needs floating tensors.
// - barrier() synchronises processes on Gloo even with NCCL (it does not wait for CUDA streams).
// - The addon holds the tensors until the promise settles (disposing them earlier is safe);
//   reading them before it resolves shows old or half-written values.
import type { Tensor, Device } from '../tensor';
import { distNative, NativeHandle } from './native';
import { DistributedError, distributed } from './errors';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** every rank, rank 0 included, connects to a store the launcher already hosts (torchrun) */
  useAgentStore?: boolean;
  /** rendezvous, every collective and store call; a dead or stopped peer fails within it */
  timeoutMs: number;
  /** 'gloo' (default) or 'nccl' (CUDA tensors go through NCCL, CPU tensors still through Gloo) */
  backend?: 'gloo' | 'nccl';
  /** the device the trainer works on; 'nccl' needs a CUDA one */
  device?: Device;
  /**
   * keys of this group in the store. Default: 'restart-' + TORCHELASTIC_RESTART_COUNT (0), so
   * that workers restarted by torchrun do not meet the previous attempt's keys in its store.
   */
  groupName?: string;
}

export interface ProcessGroupStore {
  set(key: string, value: string): Promise<void>;
  /** waits (up to timeoutMs) for the key to exist */
  get(key: string): Promise<string>;
  add(key: string, amount: number): Promise<number>;
}

export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  allReduce(tensors: Tensor[], op?: ReduceOp): Promise<void>;
  broadcast(tensors: Tensor[], root?: number): Promise<void>;
  allGather(output: Tensor[], input: Tensor): Promise<void>;
  reduceScatter(output: Tensor, inputs: Tensor[], op?: ReduceOp): Promise<void>;
  barrier(): Promise<void>;
  readonly store: ProcessGroupStore;
  destroy(): void;
}

function optionsError(message: string): DistributedError {
  return new DistributedError(`camemberta.dist: ${message}`, 'ERR_DIST_OPTIONS');
}

function checkOptions(o: ProcessGroupOptions): void {
  const integer = (value: unknown, name: string, min: number, max: number): void => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw optionsError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
    }
  };
  integer(o.worldSize, 'worldSize', 1, 1 << 20);
  integer(o.rank, 'rank', 0, o.worldSize - 1);
  integer(o.masterPort, 'masterPort', 1, 65535);
  integer(o.timeoutMs, 'timeoutMs', 1, 2 ** 31 - 1);
  if (typeof o.masterAddr !== 'string' || o.masterAddr.length === 0) throw optionsError('masterAddr must be a host name or address');
  const backend = o.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') throw optionsError(`backend must be 'gloo' or 'nccl', got '${String(backend)}'`);
  if (backend === 'nccl' && o.device !== undefined && !o.device.startsWith('cuda')) {
    throw optionsError(`backend 'nccl' needs a CUDA device, got '${o.device}'`);
  }
  if (o.groupName !== undefined && !/^[\w.-]+$/.test(o.groupName)) throw optionsError(`groupName '${o.groupName}' must be letters, digits, '.', '_' or '-'`);
}

/**
 * Options from the variables torchrun (and most launchers) set: RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE. Missing or malformed ones are an error naming them.
 */
export function processGroupOptionsFromEnv(env: NodeJS.ProcessEnv, timeoutMs: number): ProcessGroupOptions {
  const read = (name: string, fallback?: string): string => {
    const value = env[name] ?? fallback;
    if (value === undefined || value === '') throw optionsError(`environment variable ${name} is not set`);
    return value;
  };
  const number = (name: string, fallback?: string): number => {
    const text = read(name, fallback);
    if (!/^\d+$/.test(text)) throw optionsError(`environment variable ${name}='${text}' is not a non-negative integer`);
    return Number(text);
  };
  return {
    rank: number('RANK'),
    worldSize: number('WORLD_SIZE'),
    masterAddr: read('MASTER_ADDR', '127.0.0.1'),
    masterPort: number('MASTER_PORT', '29500'),
    useAgentStore: env.TORCHELASTIC_USE_AGENT_STORE === 'True',
    timeoutMs,
  };
}

/** Groups tensors by dtype and device, keeping order: one collective per group. */
function byDtypeAndDevice(tensors: Tensor[]): Tensor[][] {
  const groups = new Map<string, Tensor[]>();
  for (const t of tensors) {
    const key = `${t.dtype}@${t.device}`;
    let list = groups.get(key);
    if (!list) groups.set(key, (list = []));
    list.push(t);
  }
  return [...groups.values()];
}

class NativeProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  readonly store: ProcessGroupStore;
  /** @internal */
  readonly handle: NativeHandle;

  constructor(handle: NativeHandle) {
    this.handle = handle;
    const info = distNative.distInfo(handle);
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.backend = info.backend;
    this.store = {
      set: (key, value) => distributed(() => distNative.distStore(this.handle, 'set', key, value)),
      get: (key) => distributed(() => distNative.distStore(this.handle, 'get', key)),
      add: (key, amount) => distributed(() => distNative.distStore(this.handle, 'add', key, amount)),
    };
  }

  allReduce(tensors: Tensor[], op: ReduceOp = 'sum'): Promise<void> {
    return distributed(async () => {
      if (tensors.length === 0) return;
      await Promise.all(byDtypeAndDevice(tensors).map((group) => distNative.distAllReduce(this.handle, group.map((t) => t.handle), op)));
    });
  }

  broadcast(tensors: Tensor[], root = 0): Promise<void> {
    return distributed(async () => {
      if (tensors.length === 0) return;
      await Promise.all(byDtypeAndDevice(tensors).map((group) => distNative.distBroadcast(this.handle, group.map((t) => t.handle), root)));
    });
  }

  allGather(output: Tensor[], input: Tensor): Promise<void> {
    return distributed(() => distNative.distAllGather(this.handle, output.map((t) => t.handle), input.handle));
  }

  reduceScatter(output: Tensor, inputs: Tensor[], op: ReduceOp = 'sum'): Promise<void> {
    return distributed(() => distNative.distReduceScatter(this.handle, output.handle, inputs.map((t) => t.handle), op));
  }

  barrier(): Promise<void> {
    return distributed(() => distNative.distBarrier(this.handle));
  }

  /** collectives issued and still pending (diagnostics) */
  get progress(): { issued: number; pending: number } {
    const info = distNative.distInfo(this.handle);
    return { issued: info.seq, pending: info.pending };
  }

  destroy(): void {
    distNative.distDestroy(this.handle);
  }
}

/** @internal the native handle of a group made by initProcessGroup */
export function nativeGroupOf(pg: ProcessGroup): NativeHandle {
  if (!(pg instanceof NativeProcessGroup)) throw new TypeError('expected a ProcessGroup from initProcessGroup()');
  return pg.handle;
}

export async function initProcessGroup(o: ProcessGroupOptions): Promise<ProcessGroup> {
  checkOptions(o);
  if (!distNative.distBuilt) {
    throw new DistributedError('camemberta.dist: the native addon was built without gloo headers, so without distributed ' +
      'support: install them (Debian: apt-get install libgloo-dev, which scripts/setup.sh does as root) and rebuild ' +
      '(npm run build:native)', 'ERR_DIST_BACKEND');
  }
  const handle = await distributed(() => distNative.distInit({
    rank: o.rank,
    worldSize: o.worldSize,
    host: o.masterAddr,
    port: o.masterPort,
    agentStore: o.useAgentStore ?? false,
    timeoutMs: o.timeoutMs,
    backend: o.backend ?? 'gloo',
    groupName: o.groupName ?? `restart-${process.env.TORCHELASTIC_RESTART_COUNT ?? '0'}`,
  }));
  return new NativeProcessGroup(handle);
}
