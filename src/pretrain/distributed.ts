// Joining a multi-process run: the process group (c10d, src/dist) for this rank, and the trainer's
// DataParallel over it. Called by train.js and finetune.js when the environment (launch.js,
// torchrun, SLURM) says there are several ranks; one process never loads any of it.
import { DistributedEnv } from '../dist/env';
import { initProcessGroup, ProcessGroup } from '../dist/process-group';
import { GradientReducer } from '../dist/ddp';
import { Tensor } from '../tensor';
import { native } from '../tensor/native';
import { cudaAvailable } from '../tensor';
import { TrainConfig, differingKeys } from './config';
import { DataParallel, createDataParallel } from './parallel';
import { ProcessContext } from './trainer';

export interface JoinedRun<C = TrainConfig> {
  parallel: DataParallel<C>;
  context: ProcessContext;
}

/** What joining needs from a config: train.js's and finetune.js's share these keys. */
export interface JoinSettings {
  device: 'auto' | 'cpu' | 'cuda';
  distributed: { backend: 'auto' | 'gloo' | 'nccl'; timeout_s: number; bucket_cap_mb: number; overlap?: boolean };
}

function backendFor(config: JoinSettings): 'gloo' | 'nccl' {
  if (config.distributed.backend !== 'auto') return config.distributed.backend;
  const cuda = config.device === 'cuda' || (config.device === 'auto' && native.builtWithCuda && cudaAvailable());
  return cuda ? 'nccl' : 'gloo';
}

/**
 * Keys two ranks of one train.js run may disagree on. Not RESUMABLE_KEYS: a run may change
 * max_steps when it resumes, but two ranks with different max_steps (or eval, checkpoint or
 * logging steps) would wait for each other's collectives until the timeout.
 */
const PER_RANK_KEYS = ['threads', 'logging.progress'];

/** train.js's ranks: every key but PER_RANK_KEYS must agree. */
export function joinRun(env: DistributedEnv, config: TrainConfig): Promise<JoinedRun> {
  return joinRanks(env, config, (a, b) => differingKeys(a, b, PER_RANK_KEYS));
}

/** This rank's process group and a DataParallel over it; `differing` lists the keys two ranks' configs disagree on. */
export async function joinRanks<C extends JoinSettings>(env: DistributedEnv, config: C, differing: (a: C, b: C) => string[]): Promise<JoinedRun<C>> {
  const backend = backendFor(config);
  const pg: ProcessGroup = await initProcessGroup({
    rank: env.rank,
    worldSize: env.worldSize,
    masterAddr: env.masterAddr,
    masterPort: env.masterPort,
    useAgentStore: env.useAgentStore,
    timeoutMs: Math.round(config.distributed.timeout_s * 1000),
    backend,
    device: backend === 'nccl' ? `cuda:${env.localRank}` : 'cpu',
    groupName: `restart-${env.restartCount}`,
  });
  let reducer: GradientReducer | null = null;
  const parallel = createDataParallel<C>(pg, (parameters: Tensor[]) => {
    reducer = new GradientReducer(pg, parameters, { bucketCapMb: config.distributed.bucket_cap_mb });
    return reducer;
  }, { attempt: env.restartCount, overlap: config.distributed.overlap ?? true }, differing);
  return {
    parallel: {
      ...parallel,
      close: () => {
        reducer?.destroy();
        pg.destroy();
      },
    },
    context: { rank: env.rank, worldSize: env.worldSize, localRank: env.localRank, localWorldSize: env.localWorldSize, cpuThreads: env.cpuThreads },
  };
}
