// npm run bench:train — our full ELECTRA + GDES training step (masking, generator, sampling,
// discriminator, both losses, backward, clipping, LAMB or AdamW) against the strongest PyTorch +
// transformers reference of the same step (bench/train_reference.py): same configs, GDES, masking,
// optimizer, micro-batch, sequence length, threads and precision, random token batches of
// real-text-like lengths (the same ones on both sides; no data loading on either).
//
// Each side runs in its own long-lived child process (so that each has its own peak RSS), built
// once, warmed up, then timed in alternating rounds (ours, reference, reference, ours, ...) so that
// a change of machine load hits both. Prints tokens/s (real tokens), the ratio, peak memory (RSS on
// CPU, max_memory_allocated on CUDA), the settings each side used and, on CUDA, the model FLOPs
// utilisation.
//
// MKL's CPU dispatch (fp32 matmul): ours takes MKL's fast paths wherever the CPU has AVX2 / AVX-512
// (native/mkl.cc; CAMEMBERTA_MKL_CPU=vendor restores MKL's Intel-only rule); the reference gets
// the same through LD_PRELOAD by default (--reference-mkl features, bench/mkl-preload.ts) or runs
// torch as shipped (--reference-mkl vendor). Both sides' modes are printed and in the JSON.
//
//   npm run bench:train [-- --config small --seq 128 --dtype bf16 --json --phases 3 --reference-mkl vendor]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { spawn, spawnSync, ChildProcessWithoutNullStreams } from 'child_process';
import { createCli, runCli, integerOption, numberOption, choiceOption, flagOption, listOption, UsageError } from '../src/cli/args';
import { median, pythonExecutable } from './common';
import {
  BENCH_CONFIGS, BenchConfigName, BenchDtype, BenchOptimizer, WorkerSpec, OurStep, buildSpec, modelFlopsPerStep, gpuPeakTflops,
} from './train-common';
import { REFERENCE_MKL_MODES, ReferenceMkl, mklPreloadLibrary } from './mkl-preload';

// Compiled to build/ts/bench/train.js; the Python script stays in the source tree.
const REFERENCE_SCRIPT = path.resolve(__dirname, '..', '..', '..', 'bench', 'train_reference.py');
const TCMALLOC = 'libtcmalloc_minimal.so.4';

// ---- the workers ------------------------------------------------------------------------------------

type Reply = Record<string, unknown> & { ok: boolean; error?: string };

/** A child that answers one JSON line per JSON line it is sent. */
class Worker {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderrTail = '';

  constructor(readonly name: string, command: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async request(command: Record<string, unknown>): Promise<Reply> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error(`${this.name} worker exited (${this.child.exitCode ?? this.child.signalCode}): ${this.stderrTail.trim()}`);
    const reply = JSON.parse(next.value) as Reply;
    if (!reply.ok) throw new Error(`${this.name} worker: ${String(reply.error)} ${this.stderrTail.trim()}`);
    return reply;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end(`${JSON.stringify({ cmd: 'quit' })}\n`);
    await exited;
  }
}

/** Our side of the protocol (bench/train_reference.py serve is the other): commands on stdin. */
async function serveOurs(): Promise<void> {
  let step: OurStep | null = null;
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    let reply: Record<string, unknown>;
    try {
      const command = JSON.parse(line) as { cmd: string; spec?: WorkerSpec; steps?: number };
      if (command.cmd === 'quit') break;
      if (command.cmd === 'init') {
        step?.dispose();
        step = new OurStep(command.spec!);
        reply = { info: step.info() };
      } else if (!step) {
        throw new Error(`'${command.cmd}' before 'init'`);
      } else if (command.cmd === 'run') {
        reply = step.run(command.steps ?? 1);
      } else if (command.cmd === 'phases') {
        reply = step.phases(command.steps ?? 1);
      } else if (command.cmd === 'memory') {
        reply = { peak_mb: step.peakMb() };
      } else {
        throw new Error(`unknown command '${command.cmd}'`);
      }
      reply.ok = true;
    } catch (error) {
      reply = { ok: false, error: (error as Error).stack ?? String(error) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  }
  step?.dispose();
}

// ---- the reference's set-up --------------------------------------------------------------------------

function findTcmalloc(): string | null {
  const listed = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const match = (listed.stdout ?? '').split('\n').find((l) => l.includes(TCMALLOC));
  if (match) return match.split('=>').pop()!.trim();
  for (const dir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib']) {
    if (fs.existsSync(`${dir}/${TCMALLOC}`)) return `${dir}/${TCMALLOC}`;
  }
  return null;
}

/** The reference runs with tcmalloc, as a PyTorch expert would: installed here when missing and possible. */
function ensureTcmalloc(say: (line: string) => void): string | null {
  const found = findTcmalloc();
  if (found) return found;
  if (process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get']).status === 0) {
    say('bench:train: installing libtcmalloc-minimal4 for the reference (apt-get)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => spawnSync('apt-get', ['install', '-y', '-qq', 'libtcmalloc-minimal4'], { env, stdio: 'ignore' }).status === 0;
    if (!install()) {
      spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
      install();
    }
    return findTcmalloc();
  }
  say(`bench:train: warning: ${TCMALLOC} not found and cannot be installed here (not root or no apt-get): the reference runs on glibc malloc`);
  return null;
}

function cpuFlags(): string {
  try {
    const flags = new Set((/^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
    const model = /^model name\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown CPU';
    const wanted = ['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile'];
    return `${model}; ${wanted.map((f) => `${f} ${flags.has(f) ? 'yes' : 'no'}`).join(', ')}`;
  } catch {
    return 'unknown CPU (no /proc/cpuinfo)';
  }
}

// ---- one comparison -----------------------------------------------------------------------------------

interface Side {
  ms: number[];
  tokens: number;
  info: Record<string, unknown>;
  peakMb: number | null;
  phases?: Record<string, number>;
}

interface RunOptions {
  warmup: number;
  steps: number;
  rounds: number;
  phases: number;
  referenceOps: number;
  tcmalloc: string | null;
  /** bench/mkl-preload.ts's library for the reference (--reference-mkl features), or null */
  mklPreload: string | null;
  say: (line: string) => void;
}

async function compare(spec: WorkerSpec, options: RunOptions): Promise<{ ours: Side; reference: Side; referenceOps?: string }> {
  const env = { ...process.env, OMP_NUM_THREADS: String(spec.threads), TRANSFORMERS_VERBOSITY: 'error', TOKENIZERS_PARALLELISM: 'false' };
  const ours = new Worker('ours', process.execPath, [__filename, '--worker'], env);
  const preload = [options.tcmalloc, options.mklPreload, process.env.LD_PRELOAD].filter(Boolean).join(':');
  const referenceEnv = preload ? { ...env, LD_PRELOAD: preload } : env;
  const reference = new Worker('reference', pythonExecutable(), [REFERENCE_SCRIPT, 'serve'], referenceEnv);
  try {
    // Built one after the other: two model builds at once would share the cores.
    const oursInfo = (await ours.request({ cmd: 'init', spec })).info as Record<string, unknown>;
    const referenceInfo = (await reference.request({ cmd: 'init', spec })).info as Record<string, unknown>;
    for (const worker of [ours, reference]) await worker.request({ cmd: 'run', steps: options.warmup });
    const times = { ours: [] as number[], reference: [] as number[] };
    const tokens = { ours: 0, reference: 0 };
    for (let round = 0; round < options.rounds; round++) {
      // ABBA: neither side always goes first after the other has warmed the caches.
      const order = round % 2 === 0 ? (['ours', 'reference'] as const) : (['reference', 'ours'] as const);
      for (const side of order) {
        const reply = await (side === 'ours' ? ours : reference).request({ cmd: 'run', steps: options.steps });
        times[side].push(...(reply.ms as number[]));
        tokens[side] = reply.tokens as number;
      }
      options.say(`bench:train: ${spec.config} seq ${spec.seq} round ${round + 1}/${options.rounds}: ours ${median(times.ours).toFixed(1)} ms, reference ${median(times.reference).toFixed(1)} ms (medians so far)`);
    }
    let phases: { ours?: Record<string, number>; reference?: Record<string, number> } = {};
    if (options.phases > 0) {
      phases = {
        ours: (await ours.request({ cmd: 'phases', steps: options.phases })).phases as Record<string, number>,
        reference: (await reference.request({ cmd: 'phases', steps: options.phases })).phases as Record<string, number>,
      };
    }
    const referenceOps = options.referenceOps > 0 ? (await reference.request({ cmd: 'profile', steps: options.referenceOps })).table as string : undefined;
    const oursPeak = (await ours.request({ cmd: 'memory' })).peak_mb as number | null;
    const referencePeak = (await reference.request({ cmd: 'memory' })).peak_mb as number | null;
    return {
      ours: { ms: times.ours, tokens: tokens.ours, info: oursInfo, peakMb: oursPeak, phases: phases.ours },
      reference: { ms: times.reference, tokens: tokens.reference, info: { ...referenceInfo, ld_preload: preload || null }, peakMb: referencePeak, phases: phases.reference },
      referenceOps,
    };
  } finally {
    await Promise.all([ours.close(), reference.close()]);
  }
}

// ---- the command line -----------------------------------------------------------------------------------

const DTYPES: Record<string, BenchDtype> = { fp32: 'float32', float32: 'float32', bf16: 'bfloat16', bfloat16: 'bfloat16', fp16: 'float16', float16: 'float16' };

function defaultBatch(device: string, seq: number): number {
  if (device.startsWith('cuda')) return seq >= 512 ? 32 : 128;
  return seq >= 512 ? 4 : 16;
}

/** "features (MKL code path 7)": the mode each side's MKL dispatch used, from its worker's info. */
function mklSummary(info: unknown): string {
  if (!info || typeof info !== 'object') return 'n/a';
  const { mode, code_path: codePath, mklCodePath } = info as { mode?: string; code_path?: number | null; mklCodePath?: number | null };
  const path = codePath ?? mklCodePath;
  return path == null ? `${mode} (no MKL in this libtorch)` : `${mode} (MKL code path ${path})`;
}

function fmt(value: number | null | undefined, digits = 0): string {
  return value == null || !Number.isFinite(value) ? 'n/a' : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(args: {
  config: string[]; seq?: number[]; batch?: number; dtype: string; device: string; threads: number; optimizer: BenchOptimizer;
  compile?: boolean; warmup: number; steps: number; rounds: number; json: boolean; phases: number; referenceOps: number; peakTflops?: number;
  referenceMkl: ReferenceMkl;
}): Promise<void> {
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const dtype = DTYPES[args.dtype];
  const configs = args.config.flatMap((c) => c.split(',')).filter(Boolean) as BenchConfigName[];
  for (const name of configs) if (!BENCH_CONFIGS.includes(name)) throw new UsageError(`--config must be one of ${BENCH_CONFIGS.join(', ')}, got "${name}"`);
  const device = args.device;
  if (dtype === 'float16' && !device.startsWith('cuda')) throw new UsageError('--dtype fp16 needs --device cuda (CPU autocast is bfloat16 only)');
  const compile = args.compile ?? device.startsWith('cuda');
  const tcmalloc = device === 'cpu' ? ensureTcmalloc(say) : findTcmalloc();
  let mklPreload: string | null = null;
  if (device === 'cpu' && args.referenceMkl === 'features') {
    const built = mklPreloadLibrary();
    if ('path' in built) mklPreload = built.path;
    else say(`bench:train: warning: ${built.error}: the reference keeps MKL's vendor dispatch`);
  }
  const flags = cpuFlags();
  if (!args.json) say(`bench:train: ${flags}; ${args.threads} thread(s); ${os.cpus().length} CPUs visible (shared machines make the figures noisy)`);

  for (const config of configs) {
    const seqs = args.seq ?? (config === 'tiny' ? [128] : [128, 512]);
    for (const seq of seqs) {
      const batch = args.batch ?? defaultBatch(device, seq);
      const spec = buildSpec({ config, seq, batch, dtype, device, threads: args.threads, optimizer: args.optimizer, compile });
      const result = await compare(spec, { warmup: args.warmup, steps: args.steps, rounds: args.rounds, phases: args.phases, referenceOps: args.referenceOps, tcmalloc, mklPreload, say });
      const oursMs = median(result.ours.ms);
      const referenceMs = median(result.reference.ms);
      const oursTps = result.ours.tokens / oursMs * 1000;
      const referenceTps = result.reference.tokens / referenceMs * 1000;
      const flopsPerStep = modelFlopsPerStep(spec);
      const gpu = (result.reference.info.gpu as string | undefined) ?? null;
      const peak = device.startsWith('cuda') ? (args.peakTflops ?? (gpu ? gpuPeakTflops(gpu, dtype) : null)) : null;
      const mfu = (ms: number) => (peak ? flopsPerStep / (ms / 1000) / (peak * 1e12) : null);
      const row = {
        config, seq, batch, dtype, device, threads: args.threads, optimizer: args.optimizer,
        ours_tokens_per_s: oursTps, reference_tokens_per_s: referenceTps, ratio: oursTps / referenceTps,
        ours_ms_per_step: oursMs, reference_ms_per_step: referenceMs, steps_timed: result.ours.ms.length,
        ours_peak_mb: result.ours.peakMb, reference_peak_mb: result.reference.peakMb,
        peak_memory: device.startsWith('cuda') ? 'max_memory_allocated (ours: no binding, n/a)' : 'maxrss of each process',
        model_tflops_per_step: flopsPerStep / 1e12,
        ours_mfu: mfu(oursMs), reference_mfu: mfu(referenceMs), assumed_peak_tflops: peak, gpu,
        ours_mkl: mklSummary(result.ours.info.mkl), reference_mkl: mklSummary(result.reference.info.mkl),
        ours_settings: result.ours.info, reference_settings: result.reference.info, cpu: flags,
        ...(result.ours.phases ? { ours_phases_ms: result.ours.phases, reference_phases_ms: result.reference.phases } : {}),
      };
      if (args.json) {
        process.stdout.write(`${JSON.stringify(row)}\n`);
      } else {
        const o = result.ours.info;
        const r = result.reference.info;
        console.log(`bench:train ${config}: seq ${seq}, micro-batch ${batch}, ${dtype}${dtype === 'float32' ? '' : ' autocast'}, ${device}, ${args.threads} thread(s), ${args.optimizer}, `
          + `${fmt(result.ours.tokens)} real tokens/step, ${result.ours.ms.length} timed steps per side`);
        console.log(`  ours       (libtorch ${o.libtorch}): ${fmt(oursMs, 1)} ms/step  ${fmt(oursTps)} tokens/s  peak ${fmt(result.ours.peakMb)} MB`
          + `${row.ours_mfu != null ? `  MFU ${(row.ours_mfu * 100).toFixed(1)}%` : ''}`);
        console.log(`             allocator: ${o.allocator}; optimizer: ${o.optimizer}; ${o.compile}; dropout: ${o.dropout}; MKL dispatch: ${row.ours_mkl}; ${o.parameters} parameters`);
        console.log(`  reference  (torch ${r.torch}, transformers ${r.transformers}): ${fmt(referenceMs, 1)} ms/step  ${fmt(referenceTps)} tokens/s  peak ${fmt(result.reference.peakMb)} MB`
          + `${row.reference_mfu != null ? `  MFU ${(row.reference_mfu * 100).toFixed(1)}%` : ''}`);
        console.log(`             allocator: ${r.allocator}; optimizer: ${r.optimizer}; ${r.clip}; ${r.compile}; MKL dispatch: ${row.reference_mkl}; ${r.parameters} parameters`);
        console.log(`  ratio (ours / reference tokens/s): ${row.ratio.toFixed(2)}x   model FLOPs/step ${(flopsPerStep / 1e9).toFixed(1)} GFLOP`
          + `${peak ? ` (MFU against ${peak} TFLOP/s dense ${dtype}, ${gpu})` : ''}`);
        if (result.ours.phases && result.reference.phases) {
          console.log('  phases (ms/step, device synchronised at each boundary)   ours   reference');
          const names = [...new Set([...Object.keys(result.ours.phases), ...Object.keys(result.reference.phases)])];
          for (const name of names) {
            console.log(`    ${name.padEnd(24)} ${fmt(result.ours.phases[name], 1).padStart(30)} ${fmt(result.reference.phases[name], 1).padStart(11)}`);
          }
        }
        if (result.referenceOps) console.log(`  reference top operators (torch.profiler, ${args.referenceOps} steps):\n${result.referenceOps}`);
      }
    }
  }
}

if (process.argv.includes('--worker')) {
  void serveOurs();
} else {
  const threadsDefault = Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
  const cli = createCli('bench:train', 'Our ELECTRA + GDES training step against PyTorch + transformers, alternating in one run.')
    .option('config', listOption(`configs to run (${BENCH_CONFIGS.join(', ')}); comma-separated or repeated`, { default: ['tiny', 'small'] }))
    .option('seq', { ...listOption('sequence lengths (default: 128 for tiny, 128 and 512 otherwise)'), coerce: (values: string[]) => values.flatMap((v) => v.split(',')).map((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 8 || n > 512) throw new UsageError(`--seq must be integers in [8, 512], got "${v}"`);
      return n;
    }) })
    .option('batch', integerOption('--batch', 'micro-batch (default: 16 at seq 128 and 4 at 512 on CPU, 128 and 32 on CUDA)', { min: 1 }))
    .option('dtype', choiceOption('--dtype', 'precision: float32, or autocast bf16 / fp16 (CUDA)', Object.keys(DTYPES), { default: 'fp32' }))
    .option('device', choiceOption('--device', 'where both sides run', ['cpu', 'cuda'], { default: 'cpu' }))
    .option('threads', integerOption('--threads', 'intra-op threads of both sides', { min: 1 }, { default: threadsDefault }))
    .option('optimizer', choiceOption('--optimizer', 'LAMB (the recipe) or AdamW', ['lamb', 'adamw'] as const, { default: 'lamb' as const }))
    .option('compile', flagOption('torch.compile the reference\'s encoders (default: on CUDA only; measured slower on CPU)'))
    .option('warmup', integerOption('--warmup', 'untimed steps per side first', { min: 0 }, { default: 3 }))
    .option('steps', integerOption('--steps', 'timed steps per side per round', { min: 1 }, { default: 5 }))
    .option('rounds', integerOption('--rounds', 'alternating rounds (ours, reference, reference, ours, ...)', { min: 1 }, { default: 3 }))
    .option('phases', integerOption('--phases', 'then N steps timed per phase (masking, generator forward, sampling, discriminator forward, backward, clip, optimizer)', { min: 0 }, { default: 0 }))
    .option('reference-ops', integerOption('--reference-ops', 'then N reference steps under torch.profiler: its top operators', { min: 0 }, { default: 0 }))
    .option('reference-mkl', choiceOption('--reference-mkl', 'the reference\'s MKL CPU dispatch: features (LD_PRELOAD of a library that makes MKL take its AVX2 / AVX-512 paths on any CPU that has them, as ours does) or vendor (torch as shipped: fast paths on Intel CPUs only)', REFERENCE_MKL_MODES, { default: 'features' as const }))
    .option('peak-tflops', numberOption('--peak-tflops', 'the GPU\'s dense peak for the dtype, for MFU (default: from the GPU name)', { min: 0 }))
    .option('json', flagOption('one JSON object per config on stdout', { default: false }));
  void runCli(cli, (args) => main(args as unknown as Parameters<typeof main>[0]));
}
