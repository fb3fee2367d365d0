// src/dist/env.ts and src/dist/hostlist.ts: the variables of torchrun, launch.js and SLURM, OAR's
// node file, SLURM host lists, thread shares and devices; a bad value names its variable.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  resolveDistributedEnv, DistributedEnvError, cpuThreadsPerRank, availableCores, cgroupCpuLimit, cudaDeviceForLocalRank,
  countVisibleDevices, resolveOarLayout, readOarHosts, hostIndex, resolveSlurmLayout,
} from '../src/dist/env';
import { expandHostlist, firstHost, expandTasksPerNode, HostlistError } from '../src/dist/hostlist';

const cores = { availableCores: 16 };

function throwsEnv(fn: () => unknown, variable: string, message: string | RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, DistributedEnvError);
    assert.is((error as DistributedEnvError).variable, variable, (error as Error).message);
    if (typeof message === 'string') assert.ok((error as Error).message.includes(message), (error as Error).message);
    else assert.match((error as Error).message, message);
    return;
  }
  assert.unreachable(`no error (expected one naming ${variable})`);
}

const TORCHRUN = {
  RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', GROUP_RANK: '1', MASTER_ADDR: 'node1', MASTER_PORT: '29500',
  TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RESTART_COUNT: '2', TORCHELASTIC_MAX_RESTARTS: '3', TORCHELASTIC_RUN_ID: 'none',
};

test('nothing set: one process', () => {
  assert.equal(resolveDistributedEnv({}, cores), {
    rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, groupRank: 0, masterAddr: '127.0.0.1', masterPort: 29500,
    useAgentStore: false, restartCount: 0, cpuThreads: 16, source: 'single',
  });
  assert.is(resolveDistributedEnv({ TORCHELASTIC_RESTART_COUNT: '1' }, cores).restartCount, 1);
});

test('torchrun\'s variables (2 nodes x 4): the agent\'s store, the restart count, a quarter of the cores', () => {
  assert.equal(resolveDistributedEnv(TORCHRUN, cores), {
    rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, groupRank: 1, masterAddr: 'node1', masterPort: 29500,
    useAgentStore: true, restartCount: 2, cpuThreads: 4, source: 'torchrun',
  });
  assert.is(resolveDistributedEnv({ ...TORCHRUN, TORCHELASTIC_USE_AGENT_STORE: 'False' }, cores).useAgentStore, false);
  assert.is(resolveDistributedEnv({ ...TORCHRUN, CAMEMBERTA_LAUNCHER: 'flags' }, cores).source, 'launcher');
  assert.is(resolveDistributedEnv({ ...TORCHRUN, CAMEMBERTA_LAUNCHER: 'oar' }, cores).source, 'oar');
  assert.is(resolveDistributedEnv({ ...TORCHRUN, CAMEMBERTA_THREADS: '3' }, cores).cpuThreads, 3);
});

test('torchrun\'s variables win over SLURM\'s (srun torchrun ...)', () => {
  const env = resolveDistributedEnv({ ...TORCHRUN, SLURM_STEP_ID: '0', SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_LOCALID: '0', SLURM_NODEID: '0', SLURM_TASKS_PER_NODE: '1(x2)' }, cores);
  assert.is(env.source, 'torchrun');
  assert.is(env.rank, 5);
});

test('missing pieces: GROUP_RANK from the rank, LOCAL_WORLD_SIZE the whole world (a safe thread share), WORLD_SIZE=1 alone', () => {
  const env = resolveDistributedEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', MASTER_ADDR: 'h', MASTER_PORT: '1234' }, cores);
  assert.is(env.localWorldSize, 4);
  assert.is(env.groupRank, 0);
  assert.is(env.cpuThreads, 4);
  const grouped = resolveDistributedEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1234' }, cores);
  assert.is(grouped.groupRank, 1);
  const alone = resolveDistributedEnv({ WORLD_SIZE: '1' }, cores);
  assert.equal([alone.rank, alone.localRank, alone.worldSize, alone.source], [0, 0, 1, 'torchrun']);
});

test('bad torchrun-style values name the variable', () => {
  const base = { RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '29500' };
  throwsEnv(() => resolveDistributedEnv({ ...base, RANK: 'abc' }), 'RANK', 'RANK="abc" is not an integer >= 0');
  throwsEnv(() => resolveDistributedEnv({ ...base, RANK: '-1' }), 'RANK', 'RANK="-1"');
  throwsEnv(() => resolveDistributedEnv({ ...base, RANK: '1.5' }), 'RANK', 'RANK="1.5"');
  throwsEnv(() => resolveDistributedEnv({ ...base, RANK: '2' }), 'RANK', 'RANK=2 is not below WORLD_SIZE=2');
  throwsEnv(() => resolveDistributedEnv({ ...base, WORLD_SIZE: '0' }), 'WORLD_SIZE', 'WORLD_SIZE="0" is not an integer >= 1');
  throwsEnv(() => resolveDistributedEnv({ ...base, WORLD_SIZE: '' }), 'WORLD_SIZE', 'WORLD_SIZE is not set, but RANK is');
  throwsEnv(() => resolveDistributedEnv({ ...base, RANK: undefined }), 'RANK', 'RANK is not set (WORLD_SIZE=2)');
  throwsEnv(() => resolveDistributedEnv({ ...base, LOCAL_RANK: undefined }), 'LOCAL_RANK', 'LOCAL_RANK is not set');
  throwsEnv(() => resolveDistributedEnv({ ...base, LOCAL_RANK: '2' }), 'LOCAL_RANK', 'LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2');
  throwsEnv(() => resolveDistributedEnv({ ...base, LOCAL_WORLD_SIZE: '3' }), 'LOCAL_WORLD_SIZE', 'LOCAL_WORLD_SIZE=3 is above WORLD_SIZE=2');
  throwsEnv(() => resolveDistributedEnv({ ...base, MASTER_ADDR: undefined }), 'MASTER_ADDR', 'MASTER_ADDR is not set (WORLD_SIZE=2');
  throwsEnv(() => resolveDistributedEnv({ ...base, MASTER_ADDR: '  ' }), 'MASTER_ADDR', 'MASTER_ADDR is not set');
  throwsEnv(() => resolveDistributedEnv({ ...base, MASTER_PORT: undefined }), 'MASTER_PORT', 'MASTER_PORT is not set');
  throwsEnv(() => resolveDistributedEnv({ ...base, MASTER_PORT: '70000' }), 'MASTER_PORT', 'MASTER_PORT=70000 is not a port');
  throwsEnv(() => resolveDistributedEnv({ ...base, MASTER_PORT: 'http' }), 'MASTER_PORT', 'MASTER_PORT="http"');
  throwsEnv(() => resolveDistributedEnv({ ...base, TORCHELASTIC_USE_AGENT_STORE: 'maybe' }), 'TORCHELASTIC_USE_AGENT_STORE', 'neither True nor False');
  throwsEnv(() => resolveDistributedEnv({ ...base, TORCHELASTIC_RESTART_COUNT: 'x' }), 'TORCHELASTIC_RESTART_COUNT', 'TORCHELASTIC_RESTART_COUNT="x"');
  throwsEnv(() => resolveDistributedEnv({ ...base, CAMEMBERTA_THREADS: '0' }), 'CAMEMBERTA_THREADS', 'CAMEMBERTA_THREADS="0" is not an integer >= 1');
  throwsEnv(() => resolveDistributedEnv({ LOCAL_RANK: '0' }), 'WORLD_SIZE', 'WORLD_SIZE is not set, but LOCAL_RANK is');
});

// What srun gives rank 5 of `srun -N2 --ntasks-per-node=4` (the variables a task sees).
const SRUN = {
  SLURM_JOB_ID: '123456', SLURM_STEP_ID: '0', SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NODEID: '1',
  SLURM_TASKS_PER_NODE: '4(x2)', SLURM_JOB_NODELIST: 'gpu[01-02]', SLURM_NNODES: '2',
};

test('SLURM (srun, 2 nodes x 4): ranks, the first host as master, a port from the job id', () => {
  assert.equal(resolveDistributedEnv(SRUN, cores), {
    rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, groupRank: 1, masterAddr: 'gpu01', masterPort: 15000 + 3456,
    useAgentStore: false, restartCount: 0, cpuThreads: 4, source: 'slurm',
  });
  const explicit = resolveDistributedEnv({ ...SRUN, MASTER_ADDR: 'ib-gpu01', MASTER_PORT: '40000' }, cores);
  assert.equal([explicit.masterAddr, explicit.masterPort], ['ib-gpu01', 40000]);
});

test('SLURM: the step\'s variables win over the job\'s; uneven layouts; cpus per task; a requeue resumes', () => {
  const step = resolveDistributedEnv({
    ...SRUN, SLURM_STEP_NUM_TASKS: '5', SLURM_PROCID: '4', SLURM_NODEID: '2', SLURM_LOCALID: '0', SLURM_STEP_TASKS_PER_NODE: '2(x2),1',
    SLURM_STEP_NODELIST: 'cn[7-9]', SLURM_CPUS_PER_TASK: '6', SLURM_RESTART_COUNT: '1',
  }, cores);
  assert.equal([step.worldSize, step.localWorldSize, step.groupRank, step.masterAddr, step.cpuThreads, step.restartCount], [5, 1, 2, 'cn7', 6, 1]);
  const perNode = resolveDistributedEnv({ ...SRUN, SLURM_TASKS_PER_NODE: undefined, SLURM_NTASKS_PER_NODE: '4' }, cores);
  assert.is(perNode.localWorldSize, 4);
  const noJob = resolveDistributedEnv({ ...SRUN, SLURM_JOB_ID: undefined }, cores);
  assert.is(noJob.masterPort, 29500);
});

test('SLURM: a batch script or salloc shell (no SLURM_STEP_ID) is one process, whatever SLURM_NTASKS says', () => {
  const env = resolveDistributedEnv({ ...SRUN, SLURM_STEP_ID: undefined, SLURM_PROCID: '0' }, cores);
  assert.equal([env.source, env.worldSize], ['single', 1]);
});

test('SLURM: bad values name the variable', () => {
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_PROCID: '8' }), 'SLURM_PROCID', 'SLURM_PROCID=8 is not below SLURM_NTASKS=8');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_LOCALID: undefined }), 'SLURM_LOCALID', 'SLURM_LOCALID is not set');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_LOCALID: '4' }), 'SLURM_LOCALID', 'SLURM_LOCALID=4 is not below the tasks on this node=4');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_NODEID: '2' }), 'SLURM_NODEID', 'SLURM_NODEID=2 but SLURM_TASKS_PER_NODE="4(x2)" describes 2 node(s)');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_TASKS_PER_NODE: '4(x)' }), 'SLURM_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE: tasks per node "4(x)"');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_JOB_NODELIST: 'gpu[01-' }), 'SLURM_JOB_NODELIST', 'SLURM_JOB_NODELIST: host list "gpu[01-": "[" is never closed');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_JOB_NODELIST: undefined }), 'SLURM_STEP_NODELIST', 'none of SLURM_STEP_NODELIST, SLURM_JOB_NODELIST, SLURM_NODELIST is set');
  throwsEnv(() => resolveDistributedEnv({ ...SRUN, SLURM_CPUS_PER_TASK: 'all' }), 'SLURM_CPUS_PER_TASK', 'SLURM_CPUS_PER_TASK="all"');
});

test('host lists: ranges keep their width, several brackets multiply, plain names pass', () => {
  assert.equal(expandHostlist('gpu[01-04,07],login2'), ['gpu01', 'gpu02', 'gpu03', 'gpu04', 'gpu07', 'login2']);
  assert.equal(expandHostlist('n1'), ['n1']);
  assert.equal(expandHostlist('a[8-11]'), ['a8', 'a9', 'a10', 'a11']);
  assert.equal(expandHostlist('x[001-003]'), ['x001', 'x002', 'x003']);
  assert.equal(expandHostlist('rack[1-2]-n[01-02]'), ['rack1-n01', 'rack1-n02', 'rack2-n01', 'rack2-n02']);
  assert.equal(expandHostlist('c[5],d-1.site.org,e[2-3]x'), ['c5', 'd-1.site.org', 'e2x', 'e3x']);
  assert.is(firstHost('big[000000-99999999]'), 'big000000');
  assert.is(firstHost('login2,gpu[01-04]'), 'login2');
});

test('host lists: malformed ones are errors quoting them', () => {
  const cases: Array<[string, string]> = [
    ['a[3-1]', 'range 3-1 runs backwards'], ['a[1-2', '"[" is never closed'], ['a]', '"]" without "["'], ['a[x]', '"x" in [x] is not a number'],
    ['', 'host list is empty'], ['a,,b', 'empty entry'], ['a[[1]]', 'nested "["'], ['a[1-]', '"1-" in [1-]'],
  ];
  for (const [list, message] of cases) {
    assert.throws(() => expandHostlist(list), (error: Error) => error instanceof HostlistError && error.message.includes(message), list);
  }
  assert.throws(() => expandHostlist('n[1-200]', 100), /names more than 100 hosts/);
});

test('tasks per node', () => {
  assert.equal(expandTasksPerNode('4(x2),3'), [4, 4, 3]);
  assert.equal(expandTasksPerNode('2'), [2]);
  assert.equal(expandTasksPerNode('1(x3)'), [1, 1, 1]);
  for (const bad of ['0', '4(x0)', 'x', '4(2)', '']) {
    assert.throws(() => expandTasksPerNode(bad), (error: Error) => error instanceof HostlistError && error.message.includes(`tasks per node "${bad}"`), bad);
  }
});

test('OAR: distinct hosts of the node file in order; this host by full or short name', () => {
  const files: Record<string, string> = {
    '/oar/nodes': 'n-1.grenoble.example.fr\nn-1.grenoble.example.fr\nn-2.grenoble.example.fr\nn-2.grenoble.example.fr\n\n',
  };
  const readFile = (file: string) => {
    if (!(file in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return files[file];
  };
  assert.equal(readOarHosts('/oar/nodes', readFile), ['n-1.grenoble.example.fr', 'n-2.grenoble.example.fr']);
  const env = { OAR_NODEFILE: '/oar/nodes', OAR_JOB_ID: '777' };
  assert.equal(resolveOarLayout(env, { hostname: 'n-2', readFile }),
    { nnodes: 2, nodeRank: 1, masterAddr: 'n-1.grenoble.example.fr', masterPort: 15777, jobId: '777', source: 'oar' });
  assert.is(resolveOarLayout(env, { hostname: 'N-1.grenoble.example.fr', readFile })!.nodeRank, 0);
  assert.is(resolveOarLayout({ ...env, MASTER_PORT: '30000' }, { hostname: 'n-1', readFile })!.masterPort, 30000);
  assert.is(resolveOarLayout({}, { hostname: 'n-1', readFile }), null);
  throwsEnv(() => resolveOarLayout(env, { hostname: 'n-3', readFile }), 'OAR_NODEFILE', 'this host (n-3) is not among the hosts of OAR_NODEFILE');
  throwsEnv(() => resolveOarLayout({ OAR_NODEFILE: '/oar/missing' }, { hostname: 'n-1', readFile }), 'OAR_NODEFILE', 'OAR_NODEFILE=/oar/missing: cannot read it (ENOENT)');
  files['/oar/empty'] = '\n\n';
  throwsEnv(() => resolveOarLayout({ OAR_NODEFILE: '/oar/empty' }, { hostname: 'n-1', readFile }), 'OAR_NODEFILE', 'lists no host');
  throwsEnv(() => hostIndex(['n-1.a.fr', 'n-1.b.fr'], 'n-1', 'OAR_NODEFILE'), 'OAR_NODEFILE', 'matches several hosts');
});

test('srun with one launcher per node: a layout; more tasks than nodes is an error; outside srun none', () => {
  const step = { SLURM_STEP_ID: '1', SLURM_PROCID: '1', SLURM_NODEID: '1', SLURM_STEP_NUM_NODES: '2', SLURM_STEP_NUM_TASKS: '2', SLURM_STEP_NODELIST: 'g[3-4]', SLURM_JOB_ID: '20001' };
  assert.equal(resolveSlurmLayout(step), { nnodes: 2, nodeRank: 1, masterAddr: 'g3', masterPort: 15001, jobId: '20001', source: 'slurm' });
  throwsEnv(() => resolveSlurmLayout({ ...step, SLURM_STEP_NUM_TASKS: '8' }), 'SLURM_STEP_NUM_TASKS', 'needs one task per node');
  assert.is(resolveSlurmLayout({ ...step, SLURM_STEP_ID: undefined }), null);
});

test('threads per rank: the cores divided among the local ranks, at least 1; a cgroup quota caps the cores', () => {
  assert.is(cpuThreadsPerRank(2, 8), 4);
  assert.is(cpuThreadsPerRank(3, 8), 2);
  assert.is(cpuThreadsPerRank(16, 8), 1);
  assert.ok(cpuThreadsPerRank(1) >= 1);
  assert.throws(() => cpuThreadsPerRank(0, 8), /localWorldSize must be an integer >= 1/);
  const fake = (files: Record<string, string>) => (file: string) => {
    if (!(file in files)) throw new Error('ENOENT');
    return files[file];
  };
  assert.is(cgroupCpuLimit(fake({ '/proc/self/cgroup': '0::/job\n', '/sys/fs/cgroup/job/cpu.max': '150000 100000\n' })), 2);
  assert.is(cgroupCpuLimit(fake({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), null);
  assert.is(cgroupCpuLimit(fake({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '400000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 4);
  assert.is(cgroupCpuLimit(fake({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), null);
  assert.is(availableCores({ affinity: 8, readFile: fake({ '/sys/fs/cgroup/cpu.max': '200000 100000' }) }), 2);
  assert.is(availableCores({ affinity: 3, readFile: fake({ '/sys/fs/cgroup/cpu.max': '800000 100000' }) }), 3);
});

test('devices: cuda:LOCAL_RANK; CUDA_VISIBLE_DEVICES decides how many there are', () => {
  assert.is(cudaDeviceForLocalRank(0), 'cuda:0');
  assert.is(cudaDeviceForLocalRank(3, 4), 'cuda:3');
  throwsEnv(() => cudaDeviceForLocalRank(2, 2), 'LOCAL_RANK', 'LOCAL_RANK=2 has no GPU: 2 visible');
  throwsEnv(() => cudaDeviceForLocalRank(1, 0), 'LOCAL_RANK', 'LOCAL_RANK=1 has no GPU: 0 visible');
  // One GPU bound to each task (srun --gpus-per-task=1): every local rank's only GPU is cuda:0.
  assert.is(cudaDeviceForLocalRank(3, 1), 'cuda:0');
  assert.is(countVisibleDevices(undefined, 4), 4);
  assert.is(countVisibleDevices('2,3', 4), 2);
  assert.is(countVisibleDevices('', 4), 0);
  assert.is(countVisibleDevices('0,-1,2', 4), 1);
  assert.is(countVisibleDevices('1,7', 4), 1);
  assert.is(countVisibleDevices('GPU-5f2c1e4a,MIG-0b1c', 8), 2);
  assert.is(countVisibleDevices('0,1,2', 0), 0);
});

test.run();
