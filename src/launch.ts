#!/usr/bin/env node
// launch.js: starts the ranks of a distributed run on this node, as torchrun does, and watches them.
//   node dist/launch.js --nproc-per-node 2 dist/train.js --config configs/tiny.json --data corpus/
//   node dist/launch.js --nnodes 2 --node-rank 0 --master-addr node1 --nproc-per-node gpu dist/train.js ...
// Each rank gets torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
// MASTER_ADDR, MASTER_PORT, TORCHELASTIC_*), its share of the CPU cores (CAMEMBERTA_THREADS, and
// OMP_NUM_THREADS unless set) and cuda:LOCAL_RANK as its GPU; its output lines start with "[rank N] ".
// A rank that fails stops the others (SIGTERM, SIGKILL after --grace-period) and the launcher exits
// with its code, unless --max-restarts allows starting them all again (TORCHELASTIC_RESTART_COUNT + 1:
// train.js then resumes from its newest complete checkpoint). SIGINT/SIGTERM are passed to the ranks,
// which checkpoint and stop; a second one kills them. Under OAR (and inside an srun step with one task
// per node) the node layout comes from the scheduler. docs/DISTRIBUTED.md has the details.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync, ChildProcess } from 'child_process';
import {
  createCli, runCli, integerOption, numberOption, stringOption, flagOption, UsageError,
} from './cli/args';
import {
  DEFAULT_MASTER_PORT, LAUNCHER_VARIABLE, THREADS_VARIABLE, NodeLayout, availableCores, cpuThreadsPerRank,
  resolveOarLayout, resolveSlurmLayout, visibleGpuCount,
} from './dist/env';

const NAME = 'launch.js';

function say(message: string): void {
  process.stderr.write(`${NAME}: ${message}\n`);
}

// ---- What to start ----

type NprocSpec = number | 'gpu' | 'cpu' | 'auto';

function nprocSpec(raw: unknown): NprocSpec {
  const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  const text = String(value).trim();
  if (text === 'gpu' || text === 'cpu' || text === 'auto') return text;
  if (/^\d+$/.test(text) && Number(text) >= 1) return Number(text);
  throw new UsageError(`--nproc-per-node must be an integer >= 1, gpu, cpu or auto, got ${JSON.stringify(text)}`);
}

function nprocFor(spec: NprocSpec): number {
  if (typeof spec === 'number') return spec;
  if (spec === 'cpu') return availableCores();
  const gpus = visibleGpuCount();
  if (spec === 'gpu' && gpus === 0) throw new UsageError('--nproc-per-node gpu: no GPU visible (nvidia-smi -L, CUDA_VISIBLE_DEVICES)');
  // auto: one process already uses every core through its intra-op threads, so without GPUs one rank
  // (torchrun's auto would start one per core).
  return spec === 'gpu' ? gpus : Math.max(1, gpus);
}

function nnodesSpec(raw: unknown): number {
  const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  const text = String(value).trim();
  if (/^\d+:\d+$/.test(text)) throw new UsageError(`--nnodes ${text}: elastic node counts (MIN:MAX) are not supported; give one number`);
  if (/^\d+$/.test(text) && Number(text) >= 1) return Number(text);
  throw new UsageError(`--nnodes must be an integer >= 1, got ${JSON.stringify(text)}`);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, command))) return path.join(dir, command);
  }
  return null;
}

interface Command {
  file: string;
  args: string[];
}

/** A .js SCRIPT runs under this Node (with --no-python, an executable one runs by its #! line); anything else runs as it is. */
export function resolveCommand(script: string, args: string[], noPython: boolean): Command {
  if (/\.[cm]?js$/.test(script)) {
    if (!fs.existsSync(script)) throw new UsageError(`SCRIPT ${script} does not exist`);
    if (!(noPython && isExecutable(script))) return { file: process.execPath, args: [script, ...args] };
    return { file: path.resolve(script), args };
  }
  if (script.includes('/')) {
    if (!isExecutable(script)) throw new UsageError(`SCRIPT ${script} is not an executable file`);
    return { file: script, args };
  }
  const found = onPath(script);
  if (!found) throw new UsageError(`SCRIPT ${script}: no such command on PATH`);
  return { file: found, args };
}

let pdeathsigSupport: boolean | undefined;

/**
 * setpriv (util-linux) makes the kernel SIGKILL a rank when the launcher dies, even by SIGKILL,
 * which no handler in the launcher can cover. Without it, a launcher killed with -9 leaves its ranks.
 */
function pdeathsigWrapper(): string | null {
  const setpriv = onPath('setpriv');
  if (!setpriv) return null;
  if (pdeathsigSupport === undefined) {
    const help = spawnSync(setpriv, ['--help'], { encoding: 'utf8', timeout: 5000 });
    pdeathsigSupport = help.status === 0 && help.stdout.includes('--pdeathsig');
  }
  return pdeathsigSupport ? setpriv : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface LaunchPlan {
  command: Command;
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  standalone: boolean;
  maxRestarts: number;
  runId: string;
  graceMs: number;
  threadsPerRank: number;
  /** Where the node layout came from: CAMEMBERTA_LAUNCHER for the ranks. */
  layout: 'flags' | 'standalone' | 'oar' | 'slurm';
  logDir: string | null;
  /** Which streams go to files under logDir (1 stdout, 2 stderr, 3 both), and which of them to the console too. */
  redirects: number;
  tee: number;
}

/** The environment of one rank: the launcher's, with torchrun's variables for this rank on top. */
export function workerEnv(plan: LaunchPlan, localRank: number, restartCount: number, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const worldSize = plan.nnodes * plan.nprocPerNode;
  const rank = plan.nodeRank * plan.nprocPerNode + localRank;
  const threads = base[THREADS_VARIABLE] ?? String(plan.threadsPerRank);
  return {
    ...base,
    RANK: String(rank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(worldSize),
    LOCAL_WORLD_SIZE: String(plan.nprocPerNode),
    GROUP_RANK: String(plan.nodeRank),
    GROUP_WORLD_SIZE: String(plan.nnodes),
    ROLE_RANK: String(rank),
    ROLE_NAME: 'default',
    ROLE_WORLD_SIZE: String(worldSize),
    MASTER_ADDR: plan.masterAddr,
    MASTER_PORT: String(plan.masterPort),
    TORCHELASTIC_RESTART_COUNT: String(restartCount),
    TORCHELASTIC_MAX_RESTARTS: String(plan.maxRestarts),
    TORCHELASTIC_RUN_ID: plan.runId,
    // No agent store here: rank 0 hosts the rendezvous store (an inherited True would make it wait for one).
    TORCHELASTIC_USE_AGENT_STORE: 'False',
    TORCH_NCCL_ASYNC_ERROR_HANDLING: base.TORCH_NCCL_ASYNC_ERROR_HANDLING ?? '1',
    OMP_NUM_THREADS: base.OMP_NUM_THREADS ?? threads,
    [THREADS_VARIABLE]: threads,
    [LAUNCHER_VARIABLE]: plan.layout,
  };
}

// ---- Output ----

/** Copies a rank's stream line by line with a prefix; a last line without newline is completed at the end. */
export class PrefixedLines {
  private pending: Buffer[] = [];

  constructor(private readonly prefix: Buffer, private readonly write: (chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline >= 0; newline = chunk.indexOf(10, start)) {
      this.write(Buffer.concat([this.prefix, ...this.pending, chunk.subarray(start, newline + 1)]));
      this.pending = [];
      start = newline + 1;
    }
    if (start < chunk.length) this.pending.push(chunk.subarray(start));
  }

  end(): void {
    if (this.pending.length) this.write(Buffer.concat([this.prefix, ...this.pending, Buffer.from('\n')]));
    this.pending = [];
  }
}

// ---- Supervision ----

interface Rank {
  rank: number;
  localRank: number;
  process: ChildProcess;
  exited: boolean;
  closed: Promise<void>;
}

export interface Failure {
  rank: number;
  localRank: number;
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  message?: string;
}

function exitCodeOf(failure: Failure): number {
  if (failure.code !== null) return failure.code;
  return 128 + (failure.signal ? os.constants.signals[failure.signal] ?? 0 : 0);
}

function describeExit(failure: Failure): string {
  if (failure.message) return failure.message;
  return failure.code !== null ? `exited with code ${failure.code}` : `was killed by ${failure.signal}`;
}

/** Signals a rank's whole process group (it may have started processes of its own). */
function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** One start of the node's ranks, until every one has exited. */
class Attempt {
  readonly ranks: Rank[] = [];
  failure: Failure | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private interrupted = false;
  private finished = false;
  readonly done: Promise<Failure | null>;
  private resolveDone!: (failure: Failure | null) => void;

  constructor(private readonly plan: LaunchPlan, readonly restartCount: number, private readonly wrapper: string | null) {
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    for (let localRank = 0; localRank < plan.nprocPerNode; localRank += 1) this.start(localRank);
  }

  private logStream(rank: number, name: 'stdout' | 'stderr'): fs.WriteStream | null {
    const bit = name === 'stdout' ? 1 : 2;
    if (!this.plan.logDir || !((this.plan.redirects | this.plan.tee) & bit)) return null;
    const dir = path.join(this.plan.logDir, `attempt_${this.restartCount}`, String(rank));
    fs.mkdirSync(dir, { recursive: true });
    return fs.createWriteStream(path.join(dir, `${name}.log`));
  }

  private start(localRank: number): void {
    const { plan } = this;
    const rank = plan.nodeRank * plan.nprocPerNode + localRank;
    const file = this.wrapper ?? plan.command.file;
    const args = this.wrapper ? ['--pdeathsig', 'KILL', '--', plan.command.file, ...plan.command.args] : plan.command.args;
    // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which passes it on once,
    // and the group can be killed as a whole.
    const child = spawn(file, args, { env: workerEnv(plan, localRank, this.restartCount), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const streamsClosed: Promise<void>[] = [];
    for (const name of ['stdout', 'stderr'] as const) {
      const source = child[name]!;
      const console = name === 'stdout' ? process.stdout : process.stderr;
      const bit = name === 'stdout' ? 1 : 2;
      const log = this.logStream(rank, name);
      const toConsole = !(plan.redirects & bit) || Boolean(plan.tee & bit);
      const lines = new PrefixedLines(Buffer.from(`[rank ${rank}] `), (chunk) => {
        if (toConsole) console.write(chunk);
        log?.write(chunk);
      });
      streamsClosed.push(new Promise((resolve) => {
        source.on('data', (chunk: Buffer) => lines.push(chunk));
        source.on('close', () => {
          lines.end();
          if (log) log.end(resolve);
          else resolve();
        });
      }));
    }
    const entry: Rank = { rank, localRank, process: child, exited: false, closed: Promise.all(streamsClosed).then(() => undefined) };
    this.ranks.push(entry);
    child.on('exit', (code, signal) => this.onExit(entry, code, signal));
    child.on('error', (error) => {
      if (!entry.exited) this.onExit(entry, 127, null, `could not start ${plan.command.file}: ${error.message}`);
    });
  }

  private onExit(entry: Rank, code: number | null, signal: NodeJS.Signals | null, message?: string): void {
    if (entry.exited) return;
    entry.exited = true;
    const failed = code !== 0 || signal !== null;
    if (failed && !this.failure && !this.interrupted) {
      this.failure = { rank: entry.rank, localRank: entry.localRank, pid: entry.process.pid, code, signal, message };
      const others = this.live().length;
      say(`rank ${entry.rank} (local rank ${entry.localRank}, pid ${entry.process.pid}) ${describeExit(this.failure)}${others ? `; stopping the other ${others} rank(s)` : ''}`);
      this.stopOthers();
    }
    if (this.live().length === 0) void this.finish();
  }

  private live(): Rank[] {
    return this.ranks.filter((entry) => !entry.exited);
  }

  private stopOthers(): void {
    const live = this.live();
    if (live.length === 0) return;
    for (const entry of live) {
      signalGroup(entry.process.pid, 'SIGTERM');
      // A stopped rank (SIGSTOP, a debugger) would hold its SIGTERM until the SIGKILL.
      signalGroup(entry.process.pid, 'SIGCONT');
    }
    this.graceTimer = setTimeout(() => {
      const left = this.live();
      if (left.length) say(`rank(s) ${left.map((e) => e.rank).join(', ')} still running ${this.plan.graceMs / 1000} s after SIGTERM: SIGKILL`);
      for (const entry of left) signalGroup(entry.process.pid, 'SIGKILL');
    }, this.plan.graceMs);
  }

  /** Passes a signal the launcher received to every running rank (they checkpoint and stop). */
  forward(signal: NodeJS.Signals): void {
    this.interrupted = true;
    for (const entry of this.live()) signalGroup(entry.process.pid, signal);
  }

  kill(): void {
    // After finish() the groups are gone and their ids may be reused: leave them alone.
    if (this.finished) return;
    for (const entry of this.ranks) signalGroup(entry.process.pid, 'SIGKILL');
  }

  private async finish(): Promise<void> {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    // What a rank started and left behind goes with it.
    for (const entry of this.ranks) signalGroup(entry.process.pid, 'SIGKILL');
    // A descendant that left the group could hold a pipe open forever: wait for the output a while only.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.ranks.map((entry) => entry.closed)),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, 5000); }),
    ]);
    clearTimeout(timer);
    for (const entry of this.ranks) {
      entry.process.stdout?.destroy();
      entry.process.stderr?.destroy();
    }
    this.finished = true;
    this.resolveDone(this.failure);
  }
}

const FORWARDED: Record<string, NodeJS.Signals> = { SIGINT: 'SIGINT', SIGTERM: 'SIGTERM', SIGHUP: 'SIGTERM' };

/** Runs the ranks to the end (with restarts); resolves to the launcher's exit code. */
export async function supervise(plan: LaunchPlan): Promise<number> {
  const wrapper = pdeathsigWrapper();
  let attempt: Attempt | null = null;
  let interruptedBy: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruptedBy === null) {
      interruptedBy = signal;
      say(`${signal}: passing ${FORWARDED[signal]} to the ranks and waiting for them to stop (${signal} again kills them)`);
      attempt?.forward(FORWARDED[signal]);
    } else {
      say(`${signal} again: killing the ranks`);
      attempt?.kill();
    }
  };
  for (const signal of Object.keys(FORWARDED) as NodeJS.Signals[]) process.on(signal, onSignal);
  // Whatever ends the launcher (an exception included) ends the ranks.
  process.on('exit', () => attempt?.kill());

  for (let restartCount = 0; ; restartCount += 1) {
    if (plan.standalone && restartCount > 0) plan = { ...plan, masterPort: await freePort() };
    if (interruptedBy !== null) return 128 + os.constants.signals[interruptedBy];
    attempt = new Attempt(plan, restartCount, wrapper);
    const failure = await attempt.done;
    if (interruptedBy !== null) return 128 + os.constants.signals[interruptedBy];
    if (!failure) return 0;
    if (restartCount < plan.maxRestarts) {
      say(`restarting the ${plan.nprocPerNode} local rank(s): restart ${restartCount + 1} of ${plan.maxRestarts} (TORCHELASTIC_RESTART_COUNT=${restartCount + 1})`);
      continue;
    }
    say(`rank ${failure.rank} ${describeExit(failure)}; ${plan.maxRestarts ? `all ${plan.maxRestarts} restart(s) used` : 'no restarts allowed (--max-restarts 0)'}`);
    return exitCodeOf(failure) || 1;
  }
}

// ---- Command line ----

function streamBits(flag: string) {
  return integerOption(flag, `${flag === '--tee' ? 'copy' : 'send'} ranks' output ${flag === '--tee' ? 'into files under --log-dir as well as to the console' : 'to files under --log-dir instead of the console'}: 0 none, 1 stdout, 2 stderr, 3 both`, { min: 0, max: 3 }, { default: 0 });
}

const cli = createCli(NAME, 'Start the ranks of a distributed run on this node, with torchrun\'s environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, ...), and watch them: a failing rank stops the others; --max-restarts starts them again (they resume from their checkpoints). Ranks\' output lines start with "[rank N] ". Details: docs/DISTRIBUTED.md.', { usage: '$0 [options] SCRIPT [ARGS...]' })
  .parserConfiguration({ 'duplicate-arguments-array': true, 'halt-at-non-option': true, 'parse-positional-numbers': false })
  .option('nproc-per-node', { alias: 'nproc_per_node', requiresArg: true, describe: 'ranks on this node: a number, gpu (one per visible GPU), cpu (one per core), auto (one per visible GPU, else 1)', default: '1', coerce: nprocSpec })
  .option('nnodes', { requiresArg: true, describe: 'nodes in the run (a launcher on each) [integer >= 1] (under OAR, or srun with one task per node: from the scheduler)', coerce: nnodesSpec })
  .option('node-rank', integerOption('--node-rank', 'this node\'s index (under OAR or srun: from the scheduler, else 0)', { min: 0 }, { alias: 'node_rank' }))
  .option('master-addr', stringOption('where rank 0 hosts the rendezvous store (default 127.0.0.1; under OAR or srun the first host)', { alias: 'master_addr' }))
  .option('master-port', integerOption('--master-port', `its port (default ${DEFAULT_MASTER_PORT}; under OAR or srun MASTER_PORT, else 15000 + job id % 10000)`, { min: 1, max: 65535 }, { alias: 'master_port' }))
  .option('standalone', flagOption('one node, rendezvous on 127.0.0.1 at a free port (chosen again at each restart)'))
  .option('max-restarts', integerOption('--max-restarts', 'times the ranks are all started again after a failure', { min: 0 }, { alias: 'max_restarts', default: 0 }))
  .option('grace-period', numberOption('--grace-period', 'seconds the other ranks get to stop after SIGTERM when one failed, before SIGKILL', { min: 0 }, { default: 30 }))
  .option('monitor-interval', numberOption('--monitor-interval', 'accepted for torchrun\'s command lines; ranks\' exits are events here, nothing is polled', { min: 0 }, { alias: 'monitor_interval' }))
  .option('run-id', stringOption('TORCHELASTIC_RUN_ID for the ranks (default: OAR_JOB_ID, SLURM_JOB_ID, else "none")', { alias: ['rdzv-id', 'rdzv_id'] }))
  .option('no-python', flagOption('run SCRIPT itself (an executable .js by its #! line; a .js runs under this Node anyway), as torchrun --no-python', { alias: 'no_python' }))
  .option('log-dir', stringOption('write ranks\' output to LOG_DIR/attempt_<restart>/<rank>/{stdout,stderr}.log (with --redirects / --tee)', { alias: 'log_dir' }))
  .option('redirects', { ...streamBits('--redirects'), alias: 'r' })
  .option('tee', { ...streamBits('--tee'), alias: 't' })
  .example('$0 --standalone --nproc-per-node 2 dist/train.js --config configs/tiny.json --data data/demo/fr-demo.txt', 'two ranks on this machine')
  .example('$0 --nnodes 2 --node-rank 0 --master-addr node1 --nproc-per-node gpu dist/train.js --config configs/p1_base.json --data shards/', 'node 0 of 2 (run the same with --node-rank 1 on node 2)');

function buildPlan(args: Awaited<ReturnType<typeof cli.parseAsync>>): LaunchPlan {
  const positional = args._.map(String);
  if (positional.length === 0) throw new UsageError('no SCRIPT to run (launch.js [options] SCRIPT [ARGS...])');
  const [script, ...scriptArgs] = positional;
  const standalone = Boolean(args.standalone);
  if (standalone) {
    for (const flag of ['nnodes', 'node-rank', 'master-addr', 'master-port'] as const) {
      if (args[flag] !== undefined && !(flag === 'nnodes' && args[flag] === 1) && !(flag === 'node-rank' && args[flag] === 0)) {
        throw new UsageError(`--standalone runs one node at a free port on 127.0.0.1: drop --${flag}`);
      }
    }
  }
  const explicit = args.nnodes !== undefined && args['node-rank'] !== undefined;
  let layout: NodeLayout | null = null;
  if (!standalone && !explicit) layout = resolveOarLayout() ?? resolveSlurmLayout();
  const nnodes = (args.nnodes as number | undefined) ?? layout?.nnodes ?? 1;
  const nodeRank = args['node-rank'] ?? layout?.nodeRank ?? 0;
  if (nodeRank >= nnodes) throw new UsageError(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  const singleHostLayout = layout !== null && layout.nnodes === 1;
  const masterAddr = args['master-addr'] ?? (layout && !singleHostLayout ? layout.masterAddr : '127.0.0.1');
  if (masterAddr.trim() === '') throw new UsageError('--master-addr is empty');
  if (args.redirects && !args['log-dir']) throw new UsageError('--redirects needs --log-dir (where the output goes)');
  if (args.tee && !args['log-dir']) throw new UsageError('--tee needs --log-dir (where the copy goes)');
  const command = resolveCommand(script, scriptArgs, Boolean(args['no-python']));
  const nprocPerNode = nprocFor(nprocSpec(args['nproc-per-node']));
  return {
    command, nprocPerNode, nnodes, nodeRank, masterAddr,
    masterPort: args['master-port'] ?? layout?.masterPort ?? DEFAULT_MASTER_PORT,
    standalone,
    maxRestarts: args['max-restarts'],
    runId: args['run-id'] ?? layout?.jobId ?? process.env.OAR_JOB_ID ?? process.env.SLURM_JOB_ID ?? 'none',
    graceMs: Math.round(args['grace-period'] * 1000),
    threadsPerRank: cpuThreadsPerRank(nprocPerNode),
    layout: standalone ? 'standalone' : layout && (args.nnodes === undefined || args['node-rank'] === undefined) ? layout.source : 'flags',
    logDir: args['log-dir'] ?? null,
    redirects: args.redirects,
    tee: args.tee,
  };
}

if (require.main === module) {
  // A closed console (launch.js ... | head) must not kill the launcher while it still has ranks to stop.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  void runCli(cli, async (args) => {
    const plan = buildPlan(args);
    if (plan.standalone) plan.masterPort = await freePort();
    const worldSize = plan.nnodes * plan.nprocPerNode;
    const first = plan.nodeRank * plan.nprocPerNode;
    say(`node ${plan.nodeRank} of ${plan.nnodes}${plan.layout === 'oar' || plan.layout === 'slurm' ? ` (from ${plan.layout.toUpperCase()})` : ''}: ranks ${first}-${first + plan.nprocPerNode - 1} of ${worldSize}, `
      + `master ${plan.masterAddr}:${plan.masterPort}, ${process.env[THREADS_VARIABLE] ?? plan.threadsPerRank} CPU thread(s) per rank, run id ${plan.runId}`);
    const gpus = plan.nprocPerNode > 1 ? visibleGpuCount() : 0;
    if (gpus > 0 && plan.nprocPerNode > gpus) {
      say(`warning: ${plan.nprocPerNode} ranks but ${gpus} visible GPU(s): local ranks ${gpus}-${plan.nprocPerNode - 1} have no cuda:LOCAL_RANK (a CUDA run fails there)`);
    }
    const code = await supervise(plan);
    process.exit(code);
  });
}
