// npm run bench:dist — data-parallel scaling on this CPU: the same pretraining run (the `small`
// preset's width at 2 layers, seq 128, one thread per rank) as 1 process and as 2 Gloo ranks with the
// same global batch, with gradient buckets overlapping backward and without (one all-reduce after
// it). Prints tokens/s, scaling efficiency (tokens/s per process, 2 ranks / 1) and the share of step
// time a rank waited on communication that backward did not hide.
//   npm run bench:dist [-- --steps N --json]
// Environment: BENCH_STEPS (30), BENCH_HIDDEN (256), BENCH_LAYERS (2), BENCH_MICRO (8).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';

const root = path.resolve(__dirname, '..', '..', '..');
const TRAIN_JS = path.join(root, 'dist', 'train.js');
const LAUNCH_JS = path.join(root, 'dist', 'launch.js');
const DEMO_TEXT = path.join(root, 'data', 'demo', 'fr-recits.txt');
const json = process.argv.includes('--json');
const stepsFlag = process.argv.indexOf('--steps');
const steps = Number(stepsFlag > 0 ? process.argv[stepsFlag + 1] : process.env.BENCH_STEPS ?? 30);
const hidden = Number(process.env.BENCH_HIDDEN ?? 256);
const layers = Number(process.env.BENCH_LAYERS ?? 2);
const micro = Number(process.env.BENCH_MICRO ?? 8);

for (const file of [TRAIN_JS, LAUNCH_JS]) {
  if (!fs.existsSync(file)) {
    process.stderr.write(`bench:dist: ${file} is missing: run npm run build\n`);
    process.exit(2);
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-bench-dist-'));
const configFile = path.join(work, 'config.json');
fs.writeFileSync(configFile, JSON.stringify({
  objective: 'electra',
  model: { type: 'deberta-v2', preset: 'small', config: { num_hidden_layers: layers, hidden_size: hidden, num_attention_heads: hidden / 64, intermediate_size: 4 * hidden, max_position_embeddings: 128, position_buckets: 64 }, generator: { hidden_ratio: 1 / 3 } },
  data: { seq_length: 128, tokenizer_vocab_size: 2000, held_out_fraction: 0 },
  batch: { global_batch_size: 4 * micro, micro_batch_size: micro },
  optimizer: { name: 'lamb', lr: 2e-3 },
  schedule: { warmup_steps: 5 },
  max_steps: steps,
  logging: { every: Math.max(1, Math.floor(steps / 3)), progress: false, tensorboard: false },
  eval: { every: 0 },
  checkpoint: { every: 0, keep: 1 },
  export: { at_end: false },
}, null, 2));

function run(label: string, command: string[], outputDir: string, extra: string[] = []): { tokensPerSecond: number; commWaitShare: number } {
  const started = Date.now();
  const result = spawnSync(process.execPath, [...command, TRAIN_JS, '--config', configFile, '--data', prepared, '--output-dir', outputDir, ...extra],
    { cwd: root, encoding: 'utf8', env: { ...process.env, CAMEMBERTA_THREADS: '1' } });
  if (result.status !== 0) {
    process.stderr.write(`bench:dist: ${label} failed:\n${result.stdout}${result.stderr}`);
    process.exit(1);
  }
  // The first logged window holds the warm-up (allocator, relative-position tables); the later ones are the steady state.
  const rows = fs.readFileSync(path.join(outputDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => 'tokens_per_s' in r);
  const steady = rows.length > 1 ? rows.slice(1) : rows;
  const mean = (key: string) => steady.reduce((sum, r) => sum + (r[key] ?? 0), 0) / steady.length;
  if (!json) process.stderr.write(`bench:dist: ${label}: ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return { tokensPerSecond: mean('tokens_per_s'), commWaitShare: mean('comm_wait_share') };
}

// Data and tokenizer once, so that every measured run reads the same prepared directory.
const prepareDir = path.join(work, 'prepare');
const prepareRun = spawnSync(process.execPath, [TRAIN_JS, '--config', configFile, '--data', DEMO_TEXT, '--output-dir', prepareDir, '--max-steps', '1', '--set', 'schedule.warmup_steps=0'],
  { cwd: root, encoding: 'utf8' });
if (prepareRun.status !== 0) {
  process.stderr.write(`bench:dist: preparing the data failed:\n${prepareRun.stderr}`);
  process.exit(1);
}
const prepared = path.join(prepareDir, 'data');

const one = run('1 process', [], path.join(work, 'one'));
const launcher = [LAUNCH_JS, '--standalone', '--nproc-per-node', '2'];
const overlapped = run('2 ranks, overlap', launcher, path.join(work, 'two-overlap'));
const serial = run('2 ranks, no overlap', launcher, path.join(work, 'two-serial'), ['--set', 'distributed.overlap=false']);

const efficiency = (two: { tokensPerSecond: number }) => two.tokensPerSecond / 2 / one.tokensPerSecond;
const result = {
  cores: os.availableParallelism(),
  config: { hidden, layers, seq: 128, micro_batch: micro, global_batch: 4 * micro, steps, threads_per_rank: 1 },
  one_process_tokens_per_s: one.tokensPerSecond,
  two_ranks_tokens_per_s: overlapped.tokensPerSecond,
  two_ranks_no_overlap_tokens_per_s: serial.tokensPerSecond,
  scaling_efficiency: efficiency(overlapped),
  scaling_efficiency_no_overlap: efficiency(serial),
  comm_wait_share: overlapped.commWaitShare,
  comm_wait_share_no_overlap: serial.commWaitShare,
};
if (json) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  process.stdout.write([
    `bench:dist on ${result.cores} cores, hidden ${hidden} x ${layers} layers, seq 128, global batch ${4 * micro}, 1 thread per rank, ${steps} steps`,
    `  1 process              ${one.tokensPerSecond.toFixed(0)} tokens/s`,
    `  2 ranks, overlap       ${overlapped.tokensPerSecond.toFixed(0)} tokens/s   scaling efficiency ${pct(result.scaling_efficiency)}   waiting on communication ${pct(overlapped.commWaitShare)} of step time`,
    `  2 ranks, no overlap    ${serial.tokensPerSecond.toFixed(0)} tokens/s   scaling efficiency ${pct(result.scaling_efficiency_no_overlap)}   waiting on communication ${pct(serial.commWaitShare)} of step time`,
    '',
  ].join('\n'));
}
fs.rmSync(work, { recursive: true, force: true });
