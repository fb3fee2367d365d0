// The fine-tuning loop, the same for every task: AdamW on a warm-up + linear-decay schedule, one
// tidy() per step (nothing of a step outlives it), evaluation on dev after every epoch, the best
// epoch's weights kept and restored, then dev and test scored with them, results.json written and
// the model saved. Logs: OUTPUT_DIR/log.jsonl (as the pretraining log) and TensorBoard.
//
// Several ranks (DataParallel, one process being the trivial case): every rank draws the same
// global batch of batch_size examples and trains on a contiguous slice of it (uneven, or empty, when
// batch_size is not a multiple of the ranks). Each divides its slice's summed loss by the counts of
// the whole global batch (lossCounts, on the host: nothing to communicate), so that the gradients
// summed over the ranks are one process's on that batch, and so is the update. Rank 0 alone
// evaluates, writes and prints; the others wait for its decisions (the best epoch, the results).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, Generator, manualSeed, setNumThreads, tidy, keep, zeros, noGrad, autocast, cudaAvailable, builtWithCuda } from '../tensor';
import { Module } from '../nn';
import { AdamW, DynamicLossScaler, clipGradNorm, gradNorm, learningRate } from '../optim';
import { writeFileAtomicSyncFrom } from '../io/atomic';
import { TensorBoardWriter } from '../io/tensorboard';
import { MetricsLog } from '../pretrain/metrics-log';
import { createTrainingProgress } from '../cli/progress';
import { Random } from '../data/random';
import { DataParallel, singleProcess } from '../pretrain/parallel';
import { toDistributedError } from '../dist/errors';
import type { ProcessContext } from '../pretrain/trainer';
import { native } from '../tensor/native';
import { FinetuneConfig } from './config';
import { openModelDirectory, loadWeights } from './model';
import { DataError } from './conllu';
import {
  FinetuneTask, TaskExample, TaskData, Scores, WeightSnapshot,
  buildTokenClassification, buildSequenceClassification, buildDependencyParsing,
} from './tasks';

export const RESULTS_FILE = 'results.json';
export const MODEL_SUBDIR = 'model';

export interface FinetuneOptions {
  config: FinetuneConfig;
  /** Lines for the user (stderr by default). */
  log?: (line: string) => void;
  /** Replace results and logs an earlier run left in output_dir. */
  overwrite?: boolean;
  /** Called after every optimizer step (tests watch the live tensor count with it). */
  onStep?: (step: number) => void;
  /** The ranks this process trains with (src/pretrain/parallel.ts); one process when absent. */
  parallel?: DataParallel<FinetuneConfig>;
  /** Where this process sits among them: its GPU (local rank) and share of the cores. */
  context?: ProcessContext;
  /** Where the config came from (the --config file, or flags), for errors naming it. */
  source?: string;
}

export interface FinetuneResults {
  task: string;
  model: string;
  random_init: boolean;
  seed: number;
  labels: number;
  epochs: number;
  steps: number;
  best_epoch: number;
  train_seconds: number;
  dev: Scores;
  test: Scores | null;
  history: { epoch: number; step: number; dev: number; loss: number }[];
  model_dir: string;
}

export function resolveDevice(config: FinetuneConfig, context?: Pick<ProcessContext, 'localRank' | 'worldSize'>): string {
  if (config.device === 'cpu') return 'cpu';
  const available = builtWithCuda && cudaAvailable();
  if (config.device === 'cuda' && !available) throw new DataError('device', null, builtWithCuda ? 'no CUDA device is available' : 'camemberta was built without CUDA');
  if (!available) return 'cpu';
  if (!context || context.worldSize === 1) return 'cuda';
  // One GPU per local rank; a rank that sees a single GPU (srun --gpus-per-task=1) uses it.
  const visible = native.deviceCount();
  if (visible === 1) return 'cuda:0';
  if (context.localRank >= visible) throw new DataError('device', null, `local rank ${context.localRank} has no GPU of its own (${visible} visible): start at most ${visible} ranks per node`);
  return `cuda:${context.localRank}`;
}

/** This rank's contiguous share of a global batch: empty when the batch has fewer examples than ranks. */
export function sliceOf<E>(batch: readonly E[], rank: number, worldSize: number): E[] {
  return batch.slice(Math.floor((batch.length * rank) / worldSize), Math.floor((batch.length * (rank + 1)) / worldSize));
}

/**
 * A zero loss that reaches every parameter: a rank whose slice of the batch is empty still gives
 * each one a (zero) gradient, which the gradient reducer expects of every rank at every step.
 */
function zeroLossOver(parameters: readonly Tensor[]): Tensor {
  return parameters.map((p) => p.sum().mul(0)).reduce((a, b) => a.add(b));
}

/** Batches of examples in index order; evaluation groups similar lengths to pad little. */
function batchesOf<E>(examples: readonly E[], order: ArrayLike<number>, size: number): E[][] {
  const batches: E[][] = [];
  for (let i = 0; i < order.length; i += size) {
    const batch: E[] = [];
    for (let k = i; k < Math.min(i + size, order.length); k++) batch.push(examples[order[k]]);
    batches.push(batch);
  }
  return batches;
}

/**
 * An epoch's batches: a random order, cut into windows of 50 batches whose examples are sorted by
 * length before batching, then the batches shuffled (what HF's group_by_length does): on Sequoia's
 * training words, batches of 16 hold 1.05x the real words instead of 2.7x with random batches.
 */
export function trainingBatches<E extends TaskExample>(examples: readonly E[], size: number, random: Random): E[][] {
  const order = Array.from(random.permutation(examples.length));
  const window = size * 50;
  const batches: E[][] = [];
  for (let start = 0; start < order.length; start += window) {
    const part = order.slice(start, start + window).sort((a, b) => examples[a].length - examples[b].length || a - b);
    batches.push(...batchesOf(examples, part, size));
  }
  const shuffled = random.permutation(batches.length);
  return Array.from(shuffled, (i) => batches[i]);
}

/** Predictions of every example, in order. */
export function predictAll<E extends TaskExample, P>(task: FinetuneTask<E, P>, examples: readonly E[], batchSize: number, device: string, precision: FinetuneConfig['precision']): P[] {
  const modules: Module[] = [task.model, ...(task.head ? [task.head] : [])];
  for (const m of modules) m.eval();
  const order = Array.from(examples.keys()).sort((a, b) => examples[a].length - examples[b].length);
  const out: P[] = new Array(examples.length);
  try {
    for (const batch of batchesOf(order, order.map((_, i) => i), batchSize)) {
      const predictions = inPrecision(precision, device, () => task.predict(batch.map((i) => examples[i]), device));
      batch.forEach((i, k) => { out[i] = predictions[k]; });
    }
  } finally {
    for (const m of modules) m.train();
  }
  return out;
}

function inPrecision<T>(precision: FinetuneConfig['precision'], device: string, fn: () => T): T {
  if (precision === 'float32') return fn();
  return autocast({ device: device.startsWith('cuda') ? 'cuda' : 'cpu', dtype: precision }, fn);
}

function checkOutputDir(dir: string, overwrite: boolean): void {
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new DataError(dir, null, '--output-dir exists and is not a directory');
  if (!overwrite) {
    for (const name of [RESULTS_FILE, 'log.jsonl']) {
      if (fs.existsSync(path.join(dir, name))) throw new DataError(dir, null, `already holds a fine-tuning run (${name}); choose another --output-dir or pass --overwrite`);
    }
  }
}

export async function finetune(options: FinetuneOptions): Promise<FinetuneResults> {
  const { config } = options;
  const parallel = options.parallel ?? singleProcess;
  const context = options.context ?? { rank: parallel.rank, worldSize: parallel.worldSize, localRank: 0, localWorldSize: 1 };
  // The other ranks keep quiet: rank 0 says everything once (their errors still reach stderr).
  const say = parallel.rank === 0 ? options.log ?? ((line: string) => process.stderr.write(`${line}\n`)) : () => {};
  const outputDir = path.resolve(config.output_dir);
  // Only rank 0 writes there, so only it checks.
  if (parallel.rank === 0) checkOutputDir(outputDir, options.overwrite ?? false);
  const device = resolveDevice(config, context);
  if (config.precision === 'float16' && !device.startsWith('cuda')) throw new DataError('precision', null, 'float16 needs a CUDA device (CPU autocast is bfloat16 only)');
  await parallel.checkSameConfig(config, options.source ?? 'flags');
  setNumThreads(config.threads || context.cpuThreads || Math.max(1, Math.floor(os.cpus().length / context.localWorldSize)));
  // The global generator draws dropout only (the head's initialisation has its own): rank 0 draws
  // one process's stream, the others streams of their own, so that ranks do not drop alike.
  manualSeed(parallel.rank === 0 ? config.seed : new Random(config.seed, parallel.rank).randint(0, 2 ** 31 - 1));

  // Everything is read and checked before anything is written.
  const directory = await openModelDirectory(config.model);
  const generator = new Generator({ seed: config.seed });
  const warn = (line: string) => say(`finetune: ${line}`);
  const built = config.task === 'token-classification' ? buildTokenClassification(config, directory, generator, warn)
    : config.task === 'sequence-classification' ? buildSequenceClassification(config, directory, generator, warn)
      : buildDependencyParsing(config, directory, generator, warn);
  generator.dispose();
  const task = built.task as FinetuneTask;
  const data = built.data as TaskData<TaskExample>;
  try {
    if (!config.random_init) {
      const report = loadWeights(task.model, config.model, 'encoder');
      if (report.ignored.length) say(`finetune: not used from ${config.model}: ${report.ignored.length} tensor(s) (${report.ignored.slice(0, 4).join(', ')}${report.ignored.length > 4 ? ', ...' : ''})`);
    }
    const labelCount = 'labels' in task ? (task as unknown as { labels: string[] }).labels.length : (task as unknown as { relations: string[] }).relations.length;
    return await trainTask(task, data, config, device, outputDir, labelCount, say, options, parallel);
  } finally {
    task.dispose();
  }
}

async function trainTask(task: FinetuneTask, data: TaskData<TaskExample>, config: FinetuneConfig, device: string, outputDir: string, labelCount: number,
  say: (line: string) => void, options: FinetuneOptions, parallel: DataParallel<FinetuneConfig>): Promise<FinetuneResults> {
  const { rank, worldSize } = parallel;
  const isWriter = rank === 0;
  const modules: Module[] = [task.model, ...(task.head ? [task.head] : [])];
  if (device !== 'cpu') for (const m of modules) m.to(device as 'cuda');
  for (const m of modules) m.train();
  const parameters = modules.flatMap((m) => m.parameters());
  // Every rank starts from rank 0's weights (equal already when seeded alike; this makes it so).
  await parallel.adoptParameters(parameters);
  const optimizerOptions = { betas: config.betas, eps: config.eps, weightDecay: config.weight_decay };
  const encoderOptimizer = new AdamW(task.model.namedParameters(), { lr: config.lr, ...optimizerOptions });
  const headOptimizer = task.head ? new AdamW(task.head.namedParameters(), { lr: config.head_lr ?? config.lr, ...optimizerOptions }) : null;
  const scaler = new DynamicLossScaler({ enabled: config.precision === 'float16', device });
  const stepsPerEpoch = Math.ceil(data.train.length / config.batch_size);
  const totalSteps = Math.min(config.max_steps ?? Infinity, stepsPerEpoch * config.epochs);
  const epochs = Math.ceil(totalSteps / stepsPerEpoch);
  const schedule = { peakLr: 1, warmupSteps: Math.min(Math.round(config.warmup_ratio * totalSteps), totalSteps - 1), totalSteps, decay: 'linear' as const };
  const parameterCount = modules.reduce((n, m) => n + m.numParameters(), 0);
  say(`finetune: ${config.task}, ${config.random_init ? 'random initialisation' : config.model}, ${(parameterCount / 1e6).toFixed(2)}M parameters, ${labelCount} labels, `
    + `${data.train.length} train / ${data.dev.length} dev${data.test ? ` / ${data.test.length} test` : ''} examples, ${epochs} epoch(s) = ${totalSteps} steps of ${config.batch_size}`
    + `${worldSize > 1 ? ` (global, over ${worldSize} ranks)` : ''}, ${device}, ${config.precision}`);

  let metricsLog: MetricsLog | null = null;
  let board: TensorBoardWriter | null = null;
  if (isWriter) {
    fs.mkdirSync(outputDir, { recursive: true });
    for (const name of [RESULTS_FILE, 'log.jsonl']) fs.rmSync(path.join(outputDir, name), { force: true });
    fs.rmSync(path.join(outputDir, 'tensorboard'), { recursive: true, force: true });
    metricsLog = new MetricsLog(path.join(outputDir, 'log.jsonl'));
    board = config.logging.tensorboard ? new TensorBoardWriter(path.join(outputDir, 'tensorboard')) : null;
  }
  const progress = createTrainingProgress({ totalSteps, startStep: 0, label: 'finetune', enabled: isWriter && config.logging.progress });
  const best = new WeightSnapshot();
  let bestScore = -Infinity;
  let bestEpoch = 0;
  const history: FinetuneResults['history'] = [];
  const started = Date.now();
  let step = 0;
  // The epoch's summed loss (this rank's share) stays on the device: read once per epoch, not once per step.
  const epochLoss = keep(zeros([], { device }));
  try {
    for (let epoch = 1; epoch <= epochs && step < totalSteps; epoch++) {
      noGrad(() => epochLoss.zero_());
      let epochSteps = 0;
      // The same global batches on every rank: the order depends on the seed and the epoch only.
      for (const batch of trainingBatches(data.train, config.batch_size, new Random(config.seed, epoch))) {
        if (step >= totalSteps) break;
        const factor = learningRate(schedule, step);
        const counts = task.lossCounts(batch);
        const local = sliceOf(batch, rank, worldSize);
        parallel.prepareForBackward();
        // This rank's part of the global batch's mean loss: its sum over the global counts.
        const stepLoss = tidy(() => {
          const value = local.length > 0 ? inPrecision(config.precision, device, () => task.loss(local, device, counts)) : zeroLossOver(parameters);
          // The reducer averages the ranks' gradients; scaled by their number, it sums them.
          try {
            scaler.scaleLoss(worldSize > 1 ? value.mul(worldSize) : value).backward();
          } catch (error) {
            // A rank that died fails the reducer's all-reduce inside backward, as the autograd
            // engine's error worded by the addon: a DistributedError again, naming the rank.
            throw toDistributedError(error);
          }
          const detached = value.detach().float();
          noGrad(() => epochLoss.add_(detached));
          return detached;
        });
        // Read only on logging steps: the host waits for the device (and the ranks) there and nowhere else.
        const logNow = (step + 1) % config.logging.every === 0;
        let loss = NaN;
        let norm = NaN;
        try {
          await parallel.finishGradients();
          if (logNow) await parallel.allReduce([stepLoss], 'sum');
          const foundInf = keep(scaler.unscale(parameters));
          try {
            // The summed gradients, and so their inf check, are the same on every rank; the max
            // makes the skip decision common even if a reduction were not bitwise the same everywhere.
            if (scaler.enabled) await parallel.allReduce([foundInf], 'max');
            const total = tidy(() => {
              const total = config.clip_norm > 0 ? clipGradNorm(parameters, config.clip_norm) : gradNorm(parameters);
              const stepOptions = scaler.enabled ? { foundInf } : undefined;
              encoderOptimizer.step(config.lr * factor, stepOptions);
              headOptimizer?.step((config.head_lr ?? config.lr) * factor, stepOptions);
              scaler.update(foundInf);
              encoderOptimizer.zeroGrad();
              headOptimizer?.zeroGrad();
              return logNow ? total.item() : NaN;
            });
            if (logNow) [loss, norm] = [stepLoss.item(), total];
          } finally {
            foundInf.dispose();
          }
        } finally {
          stepLoss.dispose();
        }
        step++;
        epochSteps++;
        if (!Number.isNaN(loss)) {
          const record = { loss, lr: config.lr * factor, grad_norm: norm, epoch, elapsed_s: (Date.now() - started) / 1000 };
          metricsLog?.append({ step, ...record });
          board?.addScalars(step, record);
          progress.update(step, 0, { loss });
        } else {
          progress.update(step, 0);
        }
        options.onStep?.(step);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await parallel.allReduce([epochLoss], 'sum');
      const meanLoss = epochSteps ? epochLoss.item() / epochSteps : NaN;
      // Rank 0 scores dev and keeps the best epoch's weights; the others wait (without the
      // collective timeout) and learn its decision.
      const evaluation = await parallel.leaderDecides(`dev evaluation of epoch ${epoch}`, async () => {
        const devScores = task.score(data.dev, predictAll(task, data.dev, config.eval_batch_size, device, config.precision));
        const better = devScores.main > bestScore;
        if (better) {
          bestScore = devScores.main;
          best.take(modules);
        }
        return { main: devScores.main, better };
      });
      // A score that is not a number (no dev word) came through JSON as null.
      const devMain = evaluation.main ?? NaN;
      history.push({ epoch, step, dev: devMain, loss: meanLoss });
      const evalRecord = { [`eval_${task.mainMetric}`]: devMain, epoch };
      metricsLog?.append({ step, ...evalRecord });
      board?.addScalars(step, evalRecord);
      if (evaluation.better) bestEpoch = epoch;
      if (isWriter) progress.log(`finetune: epoch ${epoch}: dev ${task.mainMetric} ${devMain.toFixed(4)}${evaluation.better ? ' (best so far)' : ''}`);
    }
  } finally {
    progress.stop();
    metricsLog?.close();
    board?.close();
    encoderOptimizer.dispose();
    headOptimizer?.dispose();
    scaler.dispose();
    epochLoss.dispose();
  }
  const trainSeconds = (Date.now() - started) / 1000;

  // Rank 0 scores dev and test with the best epoch's weights and writes the model and results.json;
  // every rank returns those results.
  const final = await parallel.leaderDecides('final evaluation', async () => {
    best.restore();
    best.clear();
    const dev = task.score(data.dev, predictAll(task, data.dev, config.eval_batch_size, device, config.precision));
    const test = data.test ? task.score(data.test, predictAll(task, data.test, config.eval_batch_size, device, config.precision)) : null;
    const modelDir = path.join(outputDir, MODEL_SUBDIR);
    if (device !== 'cpu') for (const m of modules) m.to('cpu');
    task.save(modelDir);
    const results: FinetuneResults = {
      task: config.task, model: config.model, random_init: config.random_init, seed: config.seed, labels: labelCount,
      epochs, steps: step, best_epoch: bestEpoch, train_seconds: trainSeconds, dev, test, history, model_dir: modelDir,
    };
    writeFileAtomicSyncFrom(path.join(outputDir, RESULTS_FILE), `${JSON.stringify(results, null, 2)}\n`);
    const line = (split: string, scores: Scores | null) => (scores ? `${split} ${task.mainMetric} ${scores.main.toFixed(4)}` : null);
    say(`finetune: best epoch ${bestEpoch}; ${[line('dev', dev), line('test', test)].filter(Boolean).join(', ')}; results in ${path.join(outputDir, RESULTS_FILE)}, model in ${modelDir}`);
    return results;
  });
  // Rank 0 may host the store the others read the results from: it leaves once they have.
  await parallel.barrier();
  return final;
}
