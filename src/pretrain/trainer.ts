// The pretraining loop, from batch to update, in one file: ELECTRA + GDES (or MLM) on a DeBERTa
// pair, gradient accumulation to the global batch, mixed precision with a dynamic loss scaler,
// clipping, LAMB or AdamW on a warm-up + decay schedule, logs, evaluation, checkpoints, export.
//
// A step makes no host round trip: losses and counts accumulate on the device in one small vector
// (`statistics`) that is read only on logging steps; the loss scaler's skip decision is read once
// per optimizer step, only under float16. Only rank 0 writes (logs, checkpoints, export).
//
// Data parallelism (`DataParallel`, one process being the trivial case): a global batch is a run of
// global_batch_size / micro_batch_size micro-batches of the one data stream; rank r trains on its
// contiguous share of them and skips the rest, and every random draw of a micro-batch (masking,
// sampling, dropout) is seeded by (seed, step, the micro-batch's index in the global batch). So what a
// step computes depends on the seed and the step, not on the number of ranks, and a checkpoint
// written by N ranks resumes on M.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Tensor, Generator, tensor, zeros, tidy, keep, dispose, noGrad, autocast, manualSeed, setNumThreads,
  cudaAvailable, liveTensorCount,
} from '../tensor';
import { native } from '../tensor/native';
import { Module } from '../nn';
import { DebertaV2ForMaskedLM } from '../models/deberta/modeling';
import { RobertaForMaskedLM } from '../models/roberta/modeling';
import { PretrainingLoader, Batch, LoaderState } from '../data/loader';
import { loadTokenizer, LoadedTokenizer } from '../tokenizer/index';
import { writeFileAtomicSyncFrom } from '../io';
import { TensorBoardWriter } from '../io/tensorboard';
import { Optimizer, Lamb, AdamW, DynamicLossScaler, clipGradNorm, gradNorm, learningRate, isBiasOrLayerNorm } from '../optim';
import { createTrainingProgress } from '../cli/progress';
import { TrainConfig, TrainConfigError, RESUMABLE_KEYS, differingKeys, configJson, scheduleOf } from './config';
import { ElectraModel, electraMask, electraMetrics, ELECTRA_STATISTICS, SpecialTokenIds } from './electra';
import { bertMask, maskedLanguageModelLoss, mlmMetrics, MLM_STATISTICS } from './mlm';
import { buildModelConfigs, createPretrainingModel, TokenizerFacts } from './models';
import { checkData, prepareData, openPreparedData, DataSource } from './data';
import {
  saveCheckpoint, loadCheckpoint, newestCheckpoint, resolveCheckpoint, removeStaleStaging, listCheckpoints, CheckpointMeta,
  CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
} from './checkpoint';
import { MetricsLog } from './metrics-log';
import { exportRun } from './export';
import { planPretrainedInit, withPretrainedTokenizer, writeInitReport } from './init';
import { DataParallel, singleProcess } from './parallel';
import { createPhaseTimer } from './profile';
import { Random } from '../data/random';

/** Where this process sits among the data-parallel ranks (one process: rank 0 of 1). */
export interface ProcessContext {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  /** Intra-op threads when the config's `threads` is 0 (the launcher's share of the cores). */
  cpuThreads?: number;
}

export interface TrainOptions {
  config: TrainConfig;
  /** The config file, named in errors. */
  source: string;
  /** 'auto': the newest checkpoint of output_dir if any; a path: that checkpoint (or run). */
  resume?: string | null;
  context?: ProcessContext;
  /** The ranks this process trains with (src/pretrain/parallel.ts); one process when absent. */
  parallel?: DataParallel;
  /** Lines for the user (stderr by default). */
  log?: (line: string) => void;
  /** Stop as if SIGINT arrived once this step is done (tests). */
  stopAfterStep?: number;
  /** Time the loop's phases and record its operators over this many steps, print where the time went
   * and write OUTPUT_DIR/profile.json (train.js --profile). */
  profileSteps?: number;
  /** Called after every optimizer step (tests watch the live tensor count with it). */
  onStep?: (step: number) => void;
}

export interface TrainResult {
  step: number;
  outputDir: string;
  /** 'done', or the signal that stopped the run after a checkpoint. */
  status: 'done' | 'SIGINT' | 'SIGTERM';
  exportDir: string | null;
  lastMetrics: Record<string, number>;
}

type Precision = 'float32' | 'bfloat16' | 'float16';

/** float32 unless the hardware computes bfloat16 natively (AVX-512 BF16 / AMX on CPU, any recent GPU). */
export function resolvePrecision(config: TrainConfig, device: string, source: string): Precision {
  const onCuda = device.startsWith('cuda');
  if (config.precision === 'float16' && !onCuda) {
    throw new TrainConfigError(source, [{ key: 'precision', message: 'float16 needs device "cuda" (CPU autocast is bfloat16 only)' }]);
  }
  if (config.precision !== 'auto') return config.precision;
  if (onCuda) return 'bfloat16';
  let flags = '';
  try {
    flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: stay with float32
  }
  return /\b(avx512_bf16|amx_bf16)\b/.test(flags) ? 'bfloat16' : 'float32';
}

export function resolveDevice(config: TrainConfig, context: ProcessContext, source: string): string {
  const wantCuda = config.device === 'cuda' || (config.device === 'auto' && native.builtWithCuda && cudaAvailable());
  if (!wantCuda) return 'cpu';
  if (!native.builtWithCuda || !cudaAvailable()) {
    throw new TrainConfigError(source, [{ key: 'device', message: native.builtWithCuda ? 'no CUDA device is available' : 'camemberta was built without CUDA' }]);
  }
  // One GPU per local rank; a rank that sees a single GPU (srun --gpus-per-task=1) uses it.
  const visible = native.deviceCount();
  if (visible === 1) return 'cuda:0';
  if (context.localRank >= visible) {
    throw new TrainConfigError(source, [{ key: 'device', message: `local rank ${context.localRank} has no GPU of its own (${visible} visible): start at most ${visible} ranks per node` }]);
  }
  return `cuda:${context.localRank}`;
}

/**
 * The nearest existing ancestor of dir must be a directory we can create entries in (tried with
 * a probe directory, removed at once: permission bits say nothing for root or read-only mounts),
 * and dir itself a directory if it exists.
 */
function checkOutputDir(dir: string, source: string): void {
  let probe = dir;
  while (!fs.existsSync(probe)) probe = path.dirname(probe);
  const problem = (message: string) => new TrainConfigError(source, [{ key: 'output_dir', message }]);
  if (!fs.statSync(probe).isDirectory()) throw problem(`${probe} is not a directory`);
  try {
    fs.rmdirSync(fs.mkdtempSync(path.join(probe, '.camemberta-write-probe-')));
  } catch (error) {
    throw problem(`${probe} is not writable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** What the tokenizer of a source will be, known before anything is prepared or trained. */
async function tokenizerFacts(source: DataSource, config: TrainConfig): Promise<TokenizerFacts> {
  if (source.kind === 'prepared') {
    const manifest = JSON.parse(fs.readFileSync(path.join(source.dir, 'manifest.json'), 'utf8'));
    return { vocabSize: manifest.tokenizer.vocabSize, ids: manifest.tokenizer.specialTokens };
  }
  if (config.data.tokenizer) {
    const tokenizer = await loadTokenizer(config.data.tokenizer);
    return { vocabSize: tokenizer.vocabSize, ids: tokenizer.special.ids };
  }
  // tokenizer.js train's DeBERTa-V3 layout: 0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK], [MASK] appended.
  const pieces = config.data.tokenizer_vocab_size;
  return { vocabSize: pieces + 1, ids: { pad: 0, cls: 1, sep: 2, unk: 3, mask: pieces } };
}

// ---- objectives: what one micro-batch computes -----------------------------------------------------

interface DeviceBatch {
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor<'int64'>;
  tokenTypeIds?: Tensor<'int64'>;
}

interface Objective {
  model: Module;
  statisticsSize: number;
  /** loss (0-dim, to backpropagate), the statistics vector, and for ELECTRA the token-level RTD logits and labels */
  forward(batch: DeviceBatch, masking: Generator, sampling: Generator): { loss: Tensor; statistics: Tensor; discLogits?: Tensor; replaced?: Tensor };
  metrics(sums: readonly number[], microBatches: number): Record<string, number>;
}

function electraObjective(config: TrainConfig, special: SpecialTokenIds, randomVocabSize: number, model: ElectraModel): Objective {
  const e = config.electra;
  const maskingOptions = { maskProb: e.mask_prob, maskTokenProb: e.mask_token_prob, randomTokenProb: e.random_token_prob, maxPredictions: e.max_predictions ?? undefined };
  return {
    model,
    statisticsSize: ELECTRA_STATISTICS.length,
    forward(batch, masking, sampling) {
      const m = electraMask(batch.inputIds, batch.attentionMask, special, maskingOptions, masking, randomVocabSize);
      return model.forward(batch, m, { discWeight: e.disc_weight, temperature: e.temperature, generator: sampling });
    },
    metrics: electraMetrics,
  };
}

function mlmObjective(config: TrainConfig, special: SpecialTokenIds, randomVocabSize: number, model: DebertaV2ForMaskedLM | RobertaForMaskedLM): Objective {
  const m = config.mlm;
  const maskingOptions = { maskProb: m.mask_prob, maskTokenProb: m.mask_token_prob, randomTokenProb: m.random_token_prob, maxPredictions: m.max_predictions ?? undefined };
  return {
    model,
    statisticsSize: MLM_STATISTICS.length,
    forward(batch, masking) {
      const masked = bertMask(batch.inputIds, batch.attentionMask, special, maskingOptions, randomVocabSize, masking);
      return maskedLanguageModelLoss(model, batch, masked);
    },
    metrics: mlmMetrics,
  };
}

/** Area under the ROC curve of scores for binary labels (Mann-Whitney U, ties counted half). */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j < order.length && scores[order[j]] === scores[order[i]]) j++;
    const averageRank = (i + j + 1) / 2;
    for (let k = i; k < j; k++) if (labels[order[k]]) { positives++; rankSum += averageRank; }
    i = j;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

// ---- the run -----------------------------------------------------------------------------------

/** The seeds of micro-batch `index` of the global batch of `step`: a function of nothing else. */
function microBatchSeeds(seed: number, step: number, index: number): { dropout: bigint; masking: bigint; sampling: bigint } {
  const random = new Random(seed, step, index, 0x5eed);
  const draw = () => BigInt(Math.floor(random.random() * 2 ** 53));
  return { dropout: draw(), masking: draw(), sampling: draw() };
}

function realTokens(batch: Batch): number {
  let n = 0;
  for (let i = 0; i < batch.attentionMask.length; i++) n += batch.attentionMask[i];
  return n;
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const source = options.source;
  // init.discriminator: raw text is tokenized with the model's own tokenizer unless data.tokenizer says otherwise.
  const config = withPretrainedTokenizer(options.config);
  const parallel = options.parallel ?? singleProcess;
  const context = options.context ?? { rank: parallel.rank, worldSize: parallel.worldSize, localRank: 0, localWorldSize: 1 };
  const isWriter = context.rank === 0;
  const say = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const outputDir = path.resolve(config.output_dir);

  // 1. Everything that can be checked is checked before anything is written.
  checkOutputDir(outputDir, source);
  const trainSource = checkData(config.data.path, 'data.path', source);
  const evalSource = config.data.eval_path === null ? null : checkData(config.data.eval_path, 'data.eval_path', source);
  const device = resolveDevice(config, context, source);
  const precision = resolvePrecision(config, device, source);
  const facts = await tokenizerFacts(trainSource, config);
  // init.discriminator: the architecture comes from the HF directories (src/pretrain/init.ts).
  const pretrained = config.init.discriminator ? await planPretrainedInit(config, trainSource, source) : null;
  const modelConfigs = pretrained?.configs ?? buildModelConfigs(config, facts, source);
  // The micro-batches of one global batch, and this rank's contiguous share of them.
  const microBatchesPerStep = config.batch.global_batch_size / config.batch.micro_batch_size;
  const accumulation = microBatchesPerStep / context.worldSize;
  const firstMicroBatch = context.rank * accumulation;
  await parallel.checkSameConfig(config, source);

  let resumeFrom: string | null = null;
  if (options.resume === 'auto' || (options.resume == null && Number(process.env.TORCHELASTIC_RESTART_COUNT ?? 0) > 0)) {
    resumeFrom = newestCheckpoint(outputDir);
  } else if (options.resume) {
    try {
      resumeFrom = resolveCheckpoint(path.resolve(options.resume));
    } catch (error) {
      throw new TrainConfigError('--resume', [{ key: 'resume', message: (error as Error).message }]);
    }
  } else if (listCheckpoints(outputDir).length > 0) {
    throw new TrainConfigError(source, [{ key: 'output_dir', message: `${outputDir} already holds a run (${newestCheckpoint(outputDir)}): pass --resume auto to continue it, or choose another --output-dir` }]);
  }
  let resumed: CheckpointMeta | null = null;
  if (resumeFrom) {
    resumed = JSON.parse(fs.readFileSync(path.join(resumeFrom, 'trainer.json'), 'utf8')) as CheckpointMeta;
    const differing = differingKeys(resumed.config, config);
    if (differing.length) {
      throw new TrainConfigError(source, differing.map((key) => ({ key, message: `differs from the checkpoint ${resumeFrom} (a resumed run may change only ${RESUMABLE_KEYS.join(', ')})` })));
    }
  }
  const initFrom = !resumed && config.init_from ? resolveCheckpointOrFail(config.init_from, source) : null;
  const initialised = pretrained && !resumed ? await pretrained.load() : null;

  // 2. Output directory, data, tokenizer: prepared by rank 0, then opened by the others.
  const dataLog = { info: (m: string) => say(`train: ${m}`), warn: (m: string) => say(`train: warning: ${m}`) };
  const { trainData, evalData } = await parallel.leaderFirst('data preparation', async () => {
    fs.mkdirSync(outputDir, { recursive: true });
    removeStaleStaging(outputDir);
    writeFileAtomicSyncFrom(path.join(outputDir, 'config.json'), configJson(config));
    if (initialised) writeInitReport(outputDir, initialised.report, say);
    const trainData = await prepareData(trainSource, config, outputDir, dataLog, { name: 'data', heldOutFraction: config.data.held_out_fraction });
    const evalData = evalSource ? await prepareData(evalSource, config, outputDir, dataLog, { name: 'eval-data', tokenizerPath: trainData.tokenizerPath, heldOutFraction: 0 }) : trainData;
    return { trainData, evalData };
  }, async () => {
    const trainData = openPreparedData(trainSource, outputDir, 'data');
    return { trainData, evalData: evalSource ? openPreparedData(evalSource, outputDir, 'eval-data') : trainData };
  });
  const tokenizer: LoadedTokenizer = await loadTokenizer(trainData.tokenizerPath);
  const special = tokenizer.special.ids;

  // 3. Model, optimizer, loss scaler, random streams.
  setNumThreads(config.threads || context.cpuThreads || Math.max(1, Math.floor(os.cpus().length / context.localWorldSize)));
  manualSeed(config.seed);
  const initGenerator = new Generator({ seed: config.seed });
  const trained = initialised?.model ?? createPretrainingModel(config, modelConfigs, { generator: initGenerator, init: 'truncated' });
  initGenerator.dispose();
  const objective = trained instanceof ElectraModel
    ? electraObjective(config, special, tokenizer.vocabSize, trained)
    : mlmObjective(config, special, tokenizer.vocabSize, trained);
  const model = objective.model;
  if (device !== 'cpu') model.to(device as 'cuda');
  model.train();
  const named = model.namedParameters();
  const o = config.optimizer;
  const optimizer: Optimizer = o.name === 'lamb'
    ? new Lamb(named, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay, excludeFromDecayAndAdaptation: isBiasOrLayerNorm })
    : new AdamW(named, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
  const parameters = named.map(([, p]) => p);
  const ls = config.loss_scale;
  const scaler = new DynamicLossScaler({
    enabled: ls.enabled ?? precision === 'float16', device, initScale: ls.init_scale, growthFactor: ls.growth_factor, backoffFactor: ls.backoff_factor, growthInterval: ls.growth_interval,
  });
  const maskingGenerator = new Generator({ seed: config.seed * 2 + 1, device: device === 'cpu' ? 'cpu' : device });
  const samplingGenerator = new Generator({ seed: config.seed * 2 + 2, device: device === 'cpu' ? 'cpu' : device });
  const statistics = keep(zeros([objective.statisticsSize], { device }));

  const loaderConfig = (split: 'train' | 'held-out', dataDir: string, seed: number) => ({
    dataDir,
    examples: { mode: config.data.examples, maxSeqLength: config.data.seq_length },
    batchSize: config.batch.micro_batch_size,
    seed,
    shuffleBuffer: config.data.shuffle_buffer,
    split,
  });

  // 4. Where the run starts: a checkpoint of this run, a previous phase, or nothing.
  let step = 0;
  let tokensBefore = 0;
  let elapsedBefore = 0;
  let loaderState: LoaderState | undefined;
  let resumedWindow = { microBatches: 0, tokens: 0 };
  const restore = (dir: string, whole: boolean) => tidy(() => {
    const checkpoint = loadCheckpoint(dir);
    model.loadStateDict(checkpoint.model);
    const prefixed = (prefix: string) => new Map([...checkpoint.state].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v.to({ device })]));
    const optimizerState = prefixed('optimizer/');
    let optimizerJson = checkpoint.meta.optimizer;
    if (!whole) {
      // A new phase keeps the moments but counts its updates from 0, as NVIDIA's run_pretraining.py
      // resets optimizer.iterations for phase 2 (bias correction restarts with the schedule).
      optimizerJson = { ...optimizerJson, ...('stepCount' in optimizerJson ? { stepCount: 0 } : {}) };
      for (const [key, value] of optimizerState) if (key === 'step_count' || key.startsWith('step/')) optimizerState.set(key, value.mul(0));
    }
    optimizer.loadState(optimizerState, optimizerJson);
    scaler.loadState(prefixed('scaler/'));
    if (whole) {
      step = checkpoint.meta.step;
      tokensBefore = checkpoint.meta.tokens;
      elapsedBefore = checkpoint.meta.elapsedSeconds;
      loaderState = (checkpoint.meta.data as { train: LoaderState }).train;
      // The logging window in progress, so that the next log line is the one an uninterrupted run writes.
      // (rank 0's copy holds the whole window's sums; see checkpointNow)
      if (isWriter) noGrad(() => statistics.copy_(checkpoint.state.get('trainer/statistics')!));
      resumedWindow = checkpoint.meta.window ?? resumedWindow;
    }
  });
  if (resumeFrom) {
    restore(resumeFrom, true);
    say(`train: resumed from ${resumeFrom} at step ${step}`);
  } else if (initFrom) {
    restore(initFrom, false);
    say(`train: weights and optimizer state from ${initFrom}; step and schedule start again`);
  }
  // Every rank starts from rank 0's weights (they are equal already when seeded alike; this makes it so).
  await parallel.adoptParameters(parameters);
  const loader = PretrainingLoader.open(loaderConfig('train', trainData.dir, config.seed), loaderState);
  const evalSplit = evalSource ? 'train' : 'held-out';
  const evaluationPossible = config.eval.every > 0 && (evalSource !== null || (trainData.manifest.counts.heldOutDocuments ?? 0) > 0);
  if (config.eval.every > 0 && !evaluationPossible) say('train: warning: no held-out documents in the data and no data.eval_path: evaluation is off');

  const metricsLog = isWriter ? new MetricsLog(path.join(outputDir, 'log.jsonl'), { truncateAfterStep: step }) : null;
  const board = isWriter && config.logging.tensorboard ? new TensorBoardWriter(path.join(outputDir, 'tensorboard'), resumed ? { purgeAfterStep: step } : {}) : null;
  const parameterCount = model.numParameters();
  say(`train: ${config.objective}${config.objective === 'electra' ? ` + ${config.electra.embedding_sharing}` : ''}, ${(parameterCount / 1e6).toFixed(2)}M parameters, `
    + `${device}, ${precision}, global batch ${config.batch.global_batch_size} = ${config.batch.micro_batch_size} x ${accumulation} accumulation x ${context.worldSize} rank(s), `
    + `seq ${config.data.seq_length}, steps ${step} -> ${config.max_steps}`);

  const progress = createTrainingProgress({ totalSteps: config.max_steps, startStep: step, label: 'train', enabled: isWriter && config.logging.progress });
  // 5. Signals stop the run after the current step, with a checkpoint.
  let stopSignal: 'SIGINT' | 'SIGTERM' | null = null;
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => () => {
    if (stopSignal) process.exit(signal === 'SIGINT' ? 130 : 143);
    stopSignal = signal;
    progress.log(`train: ${signal}: stopping after this step with a checkpoint (again to quit at once)`);
  };
  const handlers = { SIGINT: onSignal('SIGINT'), SIGTERM: onSignal('SIGTERM') };
  process.on('SIGINT', handlers.SIGINT);
  process.on('SIGTERM', handlers.SIGTERM);

  const toDevice = (batch: Batch): DeviceBatch => {
    const shape = [batch.batchSize, batch.seqLength];
    const move = (t: Tensor<'int64'>): Tensor<'int64'> => (device === 'cpu' ? t : t.to<'int64'>({ device }));
    const inputIds = move(tensor(batch.inputIds, { shape }).long());
    const attentionMask = move(tensor(batch.attentionMask, { shape }).long());
    const usesTypes = modelConfigs.main.type_vocab_size > 1;
    return { inputIds, attentionMask, tokenTypeIds: usesTypes ? move(tensor(batch.tokenTypeIds, { shape }).long()) : undefined };
  };
  const inPrecision = <T>(fn: () => T): T => (precision === 'float32' ? fn()
    : autocast({ device: device.startsWith('cuda') ? 'cuda' : 'cpu', dtype: precision }, fn));

  const evaluate = (): Record<string, number> => {
    model.eval();
    const evalLoader = PretrainingLoader.open(loaderConfig(evalSplit, evalData.dir, config.seed + 1));
    const evalMasking = new Generator({ seed: config.seed + 11, device });
    const evalSampling = new Generator({ seed: config.seed + 12, device });
    const sums = new Float64Array(objective.statisticsSize);
    const scores: number[] = [];
    const labels: number[] = [];
    try {
      for (let i = 0; i < config.eval.batches; i++) {
        const batch = evalLoader.next();
        noGrad(() => tidy(() => {
          const b = toDevice(batch);
          const out = inPrecision(() => objective.forward(b, evalMasking, evalSampling));
          (out.statistics.cpu().toTypedArray() as Float32Array).forEach((v, k) => { sums[k] += v; });
          if (out.discLogits && out.replaced) {
            const logits = out.discLogits.float().cpu().contiguous().toTypedArray() as Float32Array;
            const replaced = out.replaced.to('uint8').cpu().toTypedArray() as Uint8Array;
            for (let k = 0; k < batch.attentionMask.length; k++) if (batch.attentionMask[k]) { scores.push(logits[k]); labels.push(replaced[k]); }
          }
        }));
      }
    } finally {
      evalMasking.dispose();
      evalSampling.dispose();
      model.train();
    }
    const metrics = objective.metrics(Array.from(sums), config.eval.batches);
    const out: Record<string, number> = {};
    for (const [key, value] of Object.entries(metrics)) out[`eval_${key}`] = value;
    if (scores.length) out.eval_disc_auc = rocAuc(scores, labels);
    return out;
  };

  const checkpointNow = (elapsed: number, tokens: number, windowMicroBatches: number, windowTokens: number) => {
    if (!isWriter) return;
    tidy(() => {
      const state = new Map<string, Tensor>();
      for (const [k, v] of optimizer.stateTensors()) state.set(`optimizer/${k}`, v);
      for (const [k, v] of scaler.stateTensors()) state.set(`scaler/${k}`, v);
      state.set('trainer/statistics', statistics);
      const meta: CheckpointMeta = {
        format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, step, optimizer: optimizer.stateJson(),
        data: { train: loader.state() }, tokens, elapsedSeconds: elapsed, config,
        window: { microBatches: windowMicroBatches, tokens: windowTokens },
      };
      const dir = saveCheckpoint(outputDir, { model: new Map(named), state, meta }, (d) => tokenizer.saveForTransformers(d, modelConfigs.main.max_position_embeddings), config.checkpoint.keep);
      progress.log(`train: checkpoint ${dir}`);
    });
  };

  // 6. The loop.
  const started = Date.now();
  let windowStart = Date.now();
  let windowTokens = resumedWindow.tokens;
  let windowMicroBatches = resumedWindow.microBatches;
  let windowCommMs = parallel.stats().waitMs;
  let tokens = tokensBefore;
  let lastMetrics: Record<string, number> = {};
  // Counted after the first step: the models cache relative-position tables per sequence length.
  let liveAfterFirstStep = -1;
  // With --profile, rank 0 also writes OUTPUT_DIR/profile.json (phases and operators); created
  // here, next to the try whose finally stops its operator profiler if the run ends early.
  const timer = createPhaseTimer(options.profileSteps ?? 0, device, { outputDir: isWriter ? outputDir : null });
  try {
    while (step < config.max_steps) {
      const lr = learningRate(scheduleOf(config), step);
      // The other ranks' micro-batches are skipped; their tokens still count in the global figures.
      let stepTokens = timer.phase('data', () => loader.skip(firstMicroBatch * config.batch.micro_batch_size));
      for (let micro = 0; micro < accumulation; micro++) {
        const seeds = microBatchSeeds(config.seed, step, firstMicroBatch + micro);
        manualSeed(seeds.dropout);
        maskingGenerator.manualSeed(seeds.masking);
        samplingGenerator.manualSeed(seeds.sampling);
        const batch = timer.phase('data', () => loader.next());
        stepTokens += realTokens(batch);
        if (micro === accumulation - 1) parallel.prepareForBackward();
        tidy(() => {
          const { loss, statistics: values } = timer.phase('forward (masking, generator, sampling, discriminator)',
            () => inPrecision(() => objective.forward(toDevice(batch), maskingGenerator, samplingGenerator)));
          // Mean over the global batch: each micro-batch's mean loss weighs 1/(its count), the
          // ranks' gradients are averaged by finishGradients.
          timer.phase('backward (with the overlapped all-reduces)', () => scaler.scaleLoss(loss.div(accumulation)).backward());
          noGrad(() => statistics.add_(values));
        });
      }
      stepTokens += timer.phase('data', () => loader.skip((microBatchesPerStep - firstMicroBatch - accumulation) * config.batch.micro_batch_size));
      await timer.phaseAsync('communication not hidden by backward', () => parallel.finishGradients());
      windowMicroBatches += microBatchesPerStep;
      const isLogStep = (step + 1) % config.logging.every === 0 || step + 1 === config.max_steps;
      if (isLogStep) await parallel.allReduce([statistics], 'sum');
      const foundInf = keep(scaler.unscale(parameters));
      // Averaged gradients are equal on every rank, and so is their inf check; the max makes the
      // skip decision common even if a reduction were not bitwise the same everywhere.
      if (scaler.enabled) await parallel.allReduce([foundInf], 'max');
      const logged = timer.phase('optimizer (unscale, clip, update; log reads)', () => tidy(() => {
        const norm = config.optimizer.clip_norm > 0 ? clipGradNorm(parameters, config.optimizer.clip_norm) : gradNorm(parameters);
        optimizer.step(lr, scaler.enabled ? { foundInf } : undefined);
        scaler.update(foundInf);
        optimizer.zeroGrad();
        if (!isLogStep) return null;
        return { sums: Array.from(statistics.cpu().toTypedArray()), norm: norm.item(), scale: scaler.scale.item() };
      }));
      dispose(foundInf);
      step += 1;
      tokens += stepTokens;
      windowTokens += stepTokens;
      if (logged) {
        const seconds = (Date.now() - windowStart) / 1000;
        lastMetrics = {
          ...objective.metrics(logged.sums, windowMicroBatches),
          lr, grad_norm: logged.norm, loss_scale: logged.scale,
          tokens_per_s: windowTokens / Math.max(seconds, 1e-9),
          // Real (non-padding) tokens trained on so far, all ranks: the x axis of compute comparisons.
          tokens,
          elapsed_s: elapsedBefore + (Date.now() - started) / 1000,
        };
        if (parallel.worldSize > 1) {
          // The share of the window this rank spent waiting on communication that backward did not hide.
          const comm = parallel.stats();
          lastMetrics.comm_wait_share = (comm.waitMs - windowCommMs) / 1000 / Math.max(seconds, 1e-9);
          windowCommMs = comm.waitMs;
        }
        noGrad(() => statistics.zero_());
        windowStart = Date.now();
        windowTokens = 0;
        windowMicroBatches = 0;
        metricsLog?.append({ step, ...lastMetrics });
        board?.addScalars(step, lastMetrics);
      }
      if (evaluationPossible && (step % config.eval.every === 0 || step === config.max_steps)) {
        const evalMetrics = evaluate();
        metricsLog?.append({ step, ...evalMetrics });
        board?.addScalars(step, evalMetrics);
        progress.log(`train: step ${step}: ${Object.entries(evalMetrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
      }
      progress.update(step, stepTokens, logged ? { loss: lastMetrics.loss } : undefined);
      if (liveAfterFirstStep < 0) liveAfterFirstStep = liveTensorCount();
      const profileReport = timer.endStep(stepTokens);
      if (profileReport) {
        if (config.logging.progress) progress.log(profileReport);
        else say(profileReport);
      }
      options.onStep?.(step);
      if (options.stopAfterStep === step && !stopSignal) stopSignal = 'SIGINT';
      const elapsed = elapsedBefore + (Date.now() - started) / 1000;
      // The time budget is rank 0's clock, so that every rank ends at the same step.
      const budgetSpent = config.max_seconds > 0 && isWriter && elapsed >= config.max_seconds;
      const stopReason = await parallel.stopAfter(step, stopSignal ? 'signal' : budgetSpent ? 'budget' : null);
      if (stopReason === 'signal' && !stopSignal) stopSignal = 'SIGTERM';
      if (stopReason === 'budget') progress.log(`train: the time budget (max_seconds ${config.max_seconds}) is spent at step ${step}: the run ends here`);
      const stopping = stopReason !== null;
      if (stopping || step === config.max_steps || (config.checkpoint.every > 0 && step % config.checkpoint.every === 0)) {
        // The window in progress is saved whole: rank 0 holds the ranks' sums, the others restart from 0.
        if (!isLogStep && parallel.worldSize > 1) {
          await parallel.allReduce([statistics], 'sum');
          if (!isWriter) noGrad(() => statistics.zero_());
        }
        checkpointNow(elapsed, tokens, windowMicroBatches, windowTokens);
        board?.flush();
      }
      if (stopping) break;
      // Signals are delivered from the event loop, which a synchronous loop never reaches.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    timer.close();
    progress.stop();
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
    metricsLog?.close();
    board?.close();
  }
  const leaked = liveAfterFirstStep < 0 ? 0 : liveTensorCount() - liveAfterFirstStep;
  if (leaked !== 0) say(`train: warning: ${leaked} more live tensors than after the first step (a leak)`);

  let exportDir: string | null = null;
  if (!stopSignal && isWriter && config.export.at_end) {
    exportDir = path.join(outputDir, 'export');
    exportRun(objective.model, modelConfigs, tokenizer, exportDir, { pytorchBin: config.export.pytorch_bin });
    say(`train: exported to ${exportDir}`);
  }
  dispose(statistics);
  maskingGenerator.dispose();
  samplingGenerator.dispose();
  optimizer.dispose();
  scaler.dispose();
  model.dispose();
  return { step, outputDir, status: stopSignal ?? 'done', exportDir, lastMetrics };
}

function resolveCheckpointOrFail(location: string, source: string): string {
  try {
    return resolveCheckpoint(path.resolve(location));
  } catch (error) {
    throw new TrainConfigError(source, [{ key: 'init_from', message: (error as Error).message }]);
  }
}
