// Where this process stands in a distributed run, read from the environment its launcher left:
//   torchrun, or our launch.js    RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT,
//                                 TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT (these win over the rest)
//   srun (SLURM)                  SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_[STEP_]TASKS_PER_NODE,
//                                 the first host of SLURM_[STEP|JOB]_NODELIST, MASTER_PORT or 15000 + SLURM_JOB_ID % 10000
//   nothing of the above          one process (source 'single')
// OAR starts one process per node (oarsh), not one per rank, so OAR_NODEFILE gives a node layout for
// launch.js (resolveOarLayout), which then starts the ranks; so can one srun task per node
// (resolveSlurmLayout). docs/DISTRIBUTED.md has the whole contract.
//
// A bad value is a DistributedEnvError naming the variable (RANK=abc, RANK >= WORLD_SIZE, no
// MASTER_ADDR with WORLD_SIZE > 1): the CLIs report it as one line with exit code 2.
import * as fs from 'fs';
import * as os from 'os';
import { spawnSync } from 'child_process';
import { firstHost, expandTasksPerNode, HostlistError } from './hostlist';

export type DistributedSource = 'single' | 'torchrun' | 'launcher' | 'slurm' | 'oar';

export interface DistributedEnv {
  /** Global rank, in [0, worldSize). */
  rank: number;
  worldSize: number;
  /** Rank on this node: the process uses cuda:localRank (cudaDeviceForLocalRank). */
  localRank: number;
  localWorldSize: number;
  /** This node's index among the nodes (torchrun's GROUP_RANK, SLURM_NODEID). */
  groupRank: number;
  /** Where the rendezvous store listens (rank 0 hosts it unless useAgentStore). */
  masterAddr: string;
  masterPort: number;
  /** torchrun's agent already hosts the store at masterAddr:masterPort: every rank, 0 included, connects as a client. */
  useAgentStore: boolean;
  /** How many times the launcher restarted the ranks (TORCHELASTIC_RESTART_COUNT; SLURM_RESTART_COUNT for a requeued job). Above 0: resume. */
  restartCount: number;
  /** Intra-op CPU threads for this rank: CAMEMBERTA_THREADS, else SLURM_CPUS_PER_TASK under srun, else the cores divided among the local ranks. */
  cpuThreads: number;
  /** Which launcher's variables these came from. */
  source: DistributedSource;
}

/** A distributed-environment variable (or file it names) that is missing or wrong; `variable` names it. */
export class DistributedEnvError extends Error {
  override name = 'DistributedEnvError';
  constructor(readonly variable: string, message: string) {
    super(message);
  }
}

/** The port torchrun uses when none is given. */
export const DEFAULT_MASTER_PORT = 29500;
/** Set by launch.js for its children ('flags', 'standalone', 'oar', 'slurm': where the node layout came from). */
export const LAUNCHER_VARIABLE = 'CAMEMBERTA_LAUNCHER';
/** The trainer's intra-op thread count, when set (launch.js sets it for its children unless it is set already). */
export const THREADS_VARIABLE = 'CAMEMBERTA_THREADS';

type Env = NodeJS.ProcessEnv;

function present(env: Env, name: string): boolean {
  return env[name] !== undefined && env[name]!.trim() !== '';
}

function integerVariable(env: Env, name: string, min = 0): number | undefined {
  if (!present(env, name)) return undefined;
  const text = env[name]!.trim();
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new DistributedEnvError(name, `${name}=${JSON.stringify(env[name])} is not an integer >= ${min}`);
  }
  return value;
}

function requiredInteger(env: Env, name: string, why: string, min = 0): number {
  const value = integerVariable(env, name, min);
  if (value === undefined) throw new DistributedEnvError(name, `${name} is not set (${why})`);
  return value;
}

function portVariable(env: Env, name: string): number | undefined {
  const port = integerVariable(env, name, 1);
  if (port !== undefined && port > 65535) throw new DistributedEnvError(name, `${name}=${port} is not a port (1 to 65535)`);
  return port;
}

function booleanVariable(env: Env, name: string): boolean {
  if (!present(env, name)) return false;
  const text = env[name]!.trim();
  if (/^(true|1)$/i.test(text)) return true;
  if (/^(false|0)$/i.test(text)) return false;
  throw new DistributedEnvError(name, `${name}=${JSON.stringify(env[name])} is neither True nor False`);
}

function below(name: string, value: number, limitName: string, limit: number): void {
  if (value >= limit) throw new DistributedEnvError(name, `${name}=${value} is not below ${limitName}=${limit}`);
}

function threadsFor(env: Env, localWorldSize: number, options: ResolveOptions, slurm: boolean): number {
  const explicit = integerVariable(env, THREADS_VARIABLE, 1);
  if (explicit !== undefined) return explicit;
  // srun binds each task to its own cores: they are this rank's already, not the node's to share.
  const perTask = slurm ? integerVariable(env, 'SLURM_CPUS_PER_TASK', 1) : undefined;
  if (perTask !== undefined) return perTask;
  return cpuThreadsPerRank(localWorldSize, options.availableCores);
}

export interface ResolveOptions {
  /** Cores this process may use (default availableCores()): the thread count divides them. */
  availableCores?: number;
}

function fromTorchrunVariables(env: Env, options: ResolveOptions): DistributedEnv {
  const worldSize = present(env, 'WORLD_SIZE') ? integerVariable(env, 'WORLD_SIZE', 1)! : undefined;
  if (worldSize === undefined) throw new DistributedEnvError('WORLD_SIZE', `WORLD_SIZE is not set, but ${present(env, 'RANK') ? 'RANK' : 'LOCAL_RANK'} is`);
  const single = worldSize === 1;
  const rank = single && !present(env, 'RANK') ? 0 : requiredInteger(env, 'RANK', `WORLD_SIZE=${worldSize}`);
  below('RANK', rank, 'WORLD_SIZE', worldSize);
  const localRank = single && !present(env, 'LOCAL_RANK')
    ? 0
    : requiredInteger(env, 'LOCAL_RANK', `WORLD_SIZE=${worldSize}: it picks this process's GPU on its node`);
  // Without LOCAL_WORLD_SIZE every rank might share this node: the thread share stays on the safe side.
  const localWorldSize = integerVariable(env, 'LOCAL_WORLD_SIZE', 1) ?? worldSize;
  below('LOCAL_RANK', localRank, 'LOCAL_WORLD_SIZE', localWorldSize);
  if (localWorldSize > worldSize) throw new DistributedEnvError('LOCAL_WORLD_SIZE', `LOCAL_WORLD_SIZE=${localWorldSize} is above WORLD_SIZE=${worldSize}`);
  const groupRank = integerVariable(env, 'GROUP_RANK') ?? Math.floor(rank / localWorldSize);
  const masterAddr = present(env, 'MASTER_ADDR') ? env.MASTER_ADDR!.trim() : undefined;
  if (masterAddr === undefined && !single) throw new DistributedEnvError('MASTER_ADDR', `MASTER_ADDR is not set (WORLD_SIZE=${worldSize}: the ranks meet there)`);
  const masterPort = portVariable(env, 'MASTER_PORT');
  if (masterPort === undefined && !single) throw new DistributedEnvError('MASTER_PORT', `MASTER_PORT is not set (WORLD_SIZE=${worldSize}: the ranks meet there)`);
  const launcher = present(env, LAUNCHER_VARIABLE) ? env[LAUNCHER_VARIABLE]!.trim() : undefined;
  return {
    rank, worldSize, localRank, localWorldSize, groupRank,
    masterAddr: masterAddr ?? '127.0.0.1',
    masterPort: masterPort ?? DEFAULT_MASTER_PORT,
    useAgentStore: booleanVariable(env, 'TORCHELASTIC_USE_AGENT_STORE'),
    restartCount: integerVariable(env, 'TORCHELASTIC_RESTART_COUNT') ?? 0,
    cpuThreads: threadsFor(env, localWorldSize, options, false),
    source: launcher === undefined ? 'torchrun' : launcher === 'oar' ? 'oar' : 'launcher',
  };
}

function hostOf(env: Env, names: string[], why: string): string {
  const name = names.find((candidate) => present(env, candidate));
  if (name === undefined) throw new DistributedEnvError(names[0], `none of ${names.join(', ')} is set (${why})`);
  try {
    return firstHost(env[name]!.trim());
  } catch (error) {
    if (error instanceof HostlistError) throw new DistributedEnvError(name, `${name}: ${error.message}`);
    throw error;
  }
}

/** MASTER_PORT, else a port derived from the job id (two jobs sharing a node then rarely collide), else torchrun's. */
function jobPort(env: Env, jobIdVariable: string): number {
  const explicit = portVariable(env, 'MASTER_PORT');
  if (explicit !== undefined) return explicit;
  const jobId = integerVariable(env, jobIdVariable);
  return jobId === undefined ? DEFAULT_MASTER_PORT : 15000 + (jobId % 10000);
}

function tasksOnNode(env: Env, nodeId: number): number {
  for (const name of ['SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE']) {
    if (!present(env, name)) continue;
    let counts: number[];
    try {
      counts = expandTasksPerNode(env[name]!);
    } catch (error) {
      if (error instanceof HostlistError) throw new DistributedEnvError(name, `${name}: ${error.message}`);
      throw error;
    }
    if (nodeId >= counts.length) throw new DistributedEnvError('SLURM_NODEID', `SLURM_NODEID=${nodeId} but ${name}=${JSON.stringify(env[name])} describes ${counts.length} node(s)`);
    return counts[nodeId];
  }
  return requiredInteger(env, 'SLURM_NTASKS_PER_NODE', 'nor SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE: the ranks on this node', 1);
}

/** srun sets SLURM_STEP_ID for the tasks it starts; a batch script or salloc shell has SLURM_PROCID=0 without being one of the ranks. */
function inSrunStep(env: Env): boolean {
  return present(env, 'SLURM_PROCID') && present(env, 'SLURM_STEP_ID');
}

function fromSlurmVariables(env: Env, options: ResolveOptions): DistributedEnv {
  const worldSizeName = ['SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS', 'SLURM_NPROCS'].find((name) => present(env, name)) ?? 'SLURM_NTASKS';
  const worldSize = requiredInteger(env, worldSizeName, 'the number of ranks', 1);
  const rank = requiredInteger(env, 'SLURM_PROCID', 'the global rank');
  below('SLURM_PROCID', rank, worldSizeName, worldSize);
  const localRank = requiredInteger(env, 'SLURM_LOCALID', 'the rank on this node');
  const groupRank = requiredInteger(env, 'SLURM_NODEID', 'this node among the nodes');
  const localWorldSize = tasksOnNode(env, groupRank);
  below('SLURM_LOCALID', localRank, 'the tasks on this node', localWorldSize);
  const masterAddr = present(env, 'MASTER_ADDR')
    ? env.MASTER_ADDR!.trim()
    : worldSize === 1 ? '127.0.0.1' : hostOf(env, ['SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST'], 'rank 0 runs on the first host');
  return {
    rank, worldSize, localRank, localWorldSize, groupRank, masterAddr,
    masterPort: jobPort(env, 'SLURM_JOB_ID'),
    useAgentStore: false,
    // A job requeued by SLURM (sbatch --requeue) continues from its checkpoints like a restarted one.
    restartCount: integerVariable(env, 'TORCHELASTIC_RESTART_COUNT') ?? integerVariable(env, 'SLURM_RESTART_COUNT') ?? 0,
    cpuThreads: threadsFor(env, localWorldSize, options, true),
    source: 'slurm',
  };
}

/**
 * This process's place in the run: torchrun's (or launch.js's) variables when RANK, WORLD_SIZE or
 * LOCAL_RANK is set, else SLURM's inside an srun step, else a single process. Throws a
 * DistributedEnvError naming the first bad variable.
 */
export function resolveDistributedEnv(env: Env = process.env, options: ResolveOptions = {}): DistributedEnv {
  if (['RANK', 'WORLD_SIZE', 'LOCAL_RANK'].some((name) => present(env, name))) return fromTorchrunVariables(env, options);
  if (inSrunStep(env)) return fromSlurmVariables(env, options);
  return {
    rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, groupRank: 0,
    masterAddr: '127.0.0.1', masterPort: DEFAULT_MASTER_PORT, useAgentStore: false,
    restartCount: integerVariable(env, 'TORCHELASTIC_RESTART_COUNT') ?? 0,
    cpuThreads: threadsFor(env, 1, options, false),
    source: 'single',
  };
}

// ---- CPU threads and devices ----

export interface CoreOptions {
  /** Cores the scheduler lets this process run on (default os.availableParallelism(): the affinity mask). */
  affinity?: number;
  /** Reads a file, for the cgroup CPU quota (default fs.readFileSync as UTF-8). */
  readFile?: (file: string) => string;
}

function readOrNull(readFile: (file: string) => string, file: string): string | null {
  try {
    return readFile(file);
  } catch {
    return null;
  }
}

/** The cgroup's CPU quota in cores (rounded up), or null when there is none (v2 cpu.max, else v1 cfs quota). */
export function cgroupCpuLimit(readFile: (file: string) => string = (file) => fs.readFileSync(file, 'utf8')): number | null {
  const membership = readOrNull(readFile, '/proc/self/cgroup') ?? '';
  const unified = /^0::(\/.*)$/m.exec(membership)?.[1];
  const v2Files = [...new Set([unified && unified !== '/' ? `/sys/fs/cgroup${unified}/cpu.max` : null, '/sys/fs/cgroup/cpu.max'].filter(Boolean) as string[])];
  for (const file of v2Files) {
    const text = readOrNull(readFile, file);
    if (text === null) continue;
    const [quota, period] = text.trim().split(/\s+/);
    if (quota === 'max') return null;
    if (Number(quota) > 0 && Number(period) > 0) return Math.max(1, Math.ceil(Number(quota) / Number(period)));
    return null;
  }
  const quota = Number(readOrNull(readFile, '/sys/fs/cgroup/cpu/cpu.cfs_quota_us'));
  const period = Number(readOrNull(readFile, '/sys/fs/cgroup/cpu/cpu.cfs_period_us'));
  return quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : null;
}

/** The cores this process may really use: its affinity mask, capped by a cgroup CPU quota. */
export function availableCores(options: CoreOptions = {}): number {
  const affinity = options.affinity ?? os.availableParallelism();
  const limit = cgroupCpuLimit(options.readFile);
  return Math.max(1, limit === null ? affinity : Math.min(affinity, limit));
}

/** Intra-op threads per rank that do not oversubscribe the host: floor(cores / local ranks), at least 1. */
export function cpuThreadsPerRank(localWorldSize: number, cores: number = availableCores()): number {
  if (!Number.isSafeInteger(localWorldSize) || localWorldSize < 1) throw new RangeError(`cpuThreadsPerRank: localWorldSize must be an integer >= 1, got ${localWorldSize}`);
  return Math.max(1, Math.floor(cores / localWorldSize));
}

/**
 * The CUDA device of a local rank: cuda:LOCAL_RANK, as torchrun does (CUDA_VISIBLE_DEVICES is left
 * as it is, so device k is the k-th visible GPU). With `visibleDevices`: exactly one visible GPU is
 * this rank's own (a scheduler bound one to each task, as SLURM's --gpus-per-task=1 does): cuda:0;
 * otherwise a rank beyond the visible GPUs is an error.
 */
export function cudaDeviceForLocalRank(localRank: number, visibleDevices?: number): `cuda:${number}` {
  if (!Number.isSafeInteger(localRank) || localRank < 0) throw new DistributedEnvError('LOCAL_RANK', `LOCAL_RANK=${localRank} is not an integer >= 0`);
  if (visibleDevices === 1) return 'cuda:0';
  if (visibleDevices !== undefined && localRank >= visibleDevices) {
    throw new DistributedEnvError('LOCAL_RANK', `LOCAL_RANK=${localRank} has no GPU: ${visibleDevices} visible (start at most one rank per GPU on a node)`);
  }
  return `cuda:${localRank}`;
}

/**
 * How many of `physical` GPUs CUDA_VISIBLE_DEVICES leaves visible (undefined: all). CUDA stops at
 * the first entry it cannot use (-1, an index past the last GPU); UUIDs (GPU-..., MIG-...) count.
 */
export function countVisibleDevices(visible: string | undefined, physical: number): number {
  if (visible === undefined) return physical;
  let count = 0;
  for (const entry of visible.split(',').map((e) => e.trim())) {
    if (entry === '') break;
    if (/^\d+$/.test(entry) ? Number(entry) >= physical : !/^(GPU|MIG)-/i.test(entry)) break;
    count += 1;
  }
  return Math.min(count, physical);
}

/** NVIDIA GPUs on this machine without loading libtorch: `nvidia-smi -L`, else /proc/driver/nvidia/gpus, else 0. */
export function physicalGpuCount(): number {
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 20_000 });
  if (smi.status === 0) return smi.stdout.split('\n').filter((line) => /^GPU \d+/.test(line)).length;
  try {
    return fs.readdirSync('/proc/driver/nvidia/gpus').length;
  } catch {
    return 0;
  }
}

/** The GPUs this process can use (what cuda:0 .. cuda:N-1 are). */
export function visibleGpuCount(env: Env = process.env): number {
  return countVisibleDevices(env.CUDA_VISIBLE_DEVICES, physicalGpuCount());
}

// ---- Node layouts for the launcher (one launcher per node) ----

export interface NodeLayout {
  nnodes: number;
  nodeRank: number;
  /** The first node: rank 0 runs there. */
  masterAddr: string;
  /** MASTER_PORT, else one derived from the job id. */
  masterPort: number;
  /** The job id, used as the run id. */
  jobId: string | null;
  source: 'oar' | 'slurm';
}

function shortName(host: string): string {
  return host.split('.')[0].toLowerCase();
}

/** OAR_NODEFILE's hosts (one line per core, repeated), distinct, in their order of first appearance. */
export function readOarHosts(file: string, readFile: (file: string) => string = (f) => fs.readFileSync(f, 'utf8')): string[] {
  let text: string;
  try {
    text = readFile(file);
  } catch (error) {
    throw new DistributedEnvError('OAR_NODEFILE', `OAR_NODEFILE=${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const hosts = [...new Set(text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#')))];
  if (hosts.length === 0) throw new DistributedEnvError('OAR_NODEFILE', `OAR_NODEFILE=${file} lists no host`);
  return hosts;
}

/** Which of `hosts` this machine is: the same name, or the same short name (node-3 vs node-3.site.grid5000.fr). */
export function hostIndex(hosts: string[], hostname: string, variable: string): number {
  const exact = hosts.findIndex((host) => host.toLowerCase() === hostname.toLowerCase());
  if (exact >= 0) return exact;
  const matches = hosts.map((host, index) => ({ host, index })).filter(({ host }) => shortName(host) === shortName(hostname));
  if (matches.length === 1) return matches[0].index;
  if (matches.length > 1) throw new DistributedEnvError(variable, `this host (${hostname}) matches several hosts of ${variable}: ${matches.map((m) => m.host).join(', ')}; give --node-rank`);
  throw new DistributedEnvError(variable, `this host (${hostname}) is not among the hosts of ${variable} (${hosts.slice(0, 8).join(', ')}${hosts.length > 8 ? ', ...' : ''}); give --node-rank`);
}

export interface LayoutOptions {
  hostname?: string;
  readFile?: (file: string) => string;
}

/**
 * Under OAR (OAR_NODEFILE set): as many nodes as distinct hosts in the file, this node's rank its
 * position there, the master the first host. Null outside OAR.
 */
export function resolveOarLayout(env: Env = process.env, options: LayoutOptions = {}): NodeLayout | null {
  if (!present(env, 'OAR_NODEFILE')) return null;
  const hosts = readOarHosts(env.OAR_NODEFILE!.trim(), options.readFile);
  const nodeRank = hostIndex(hosts, options.hostname ?? os.hostname(), 'OAR_NODEFILE');
  return {
    nnodes: hosts.length, nodeRank, masterAddr: hosts[0], masterPort: jobPort(env, 'OAR_JOB_ID'),
    jobId: present(env, 'OAR_JOB_ID') ? env.OAR_JOB_ID!.trim() : null, source: 'oar',
  };
}

/**
 * Inside an srun step with one task per node (srun --ntasks-per-node=1 node dist/launch.js ...): the
 * step's nodes, this node's SLURM_NODEID, the first host as master. Null outside an srun step. More
 * than one task per node is an error: each would start the node's ranks again.
 */
export function resolveSlurmLayout(env: Env = process.env): NodeLayout | null {
  if (!inSrunStep(env)) return null;
  const nodesName = present(env, 'SLURM_STEP_NUM_NODES') ? 'SLURM_STEP_NUM_NODES' : 'SLURM_NNODES';
  const nnodes = requiredInteger(env, nodesName, 'the nodes of the step', 1);
  const tasksName = ['SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS'].find((name) => present(env, name)) ?? 'SLURM_NTASKS';
  const tasks = requiredInteger(env, tasksName, 'the tasks of the step', 1);
  if (tasks !== nnodes) {
    throw new DistributedEnvError(tasksName, `${tasksName}=${tasks} on ${nnodes} node(s): launch.js under srun needs one task per node (srun --ntasks-per-node=1), or run train.js itself as the srun tasks`);
  }
  const nodeRank = requiredInteger(env, 'SLURM_NODEID', 'this node among the nodes');
  below('SLURM_NODEID', nodeRank, nodesName, nnodes);
  const masterAddr = present(env, 'MASTER_ADDR') ? env.MASTER_ADDR!.trim() : hostOf(env, ['SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST'], 'the master is the first host');
  return {
    nnodes, nodeRank, masterAddr, masterPort: jobPort(env, 'SLURM_JOB_ID'),
    jobId: present(env, 'SLURM_JOB_ID') ? env.SLURM_JOB_ID!.trim() : null, source: 'slurm',
  };
}
