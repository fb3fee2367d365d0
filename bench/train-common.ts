// Shared by bench/train.ts and test/bench-train.test.ts: the bench configs, the spec both sides of
// the comparison are built from (ours here, the reference in bench/train_reference.py), our
// training step built from the trainer's own pieces, and the model FLOPs of a step.
//
// Our step is the trainer's (src/pretrain/trainer.ts) without its data loader: per micro-batch
// seeds, electraMask, ElectraModel.forward under autocast, the loss scaler, backward, statistics
// accumulated on the device, clipGradNorm, LAMB or AdamW, zeroGrad. No host read per step.
import {
  Tensor, Generator, tensor, zeros, tidy, keep, dispose, noGrad, autocast, manualSeed, setNumThreads, getNumThreads,
  synchronize, embedding, where, cpuAllocatorStats, torchVersion, mklCpuDispatch, cpuDropout,
} from '../src/tensor';
import { parseTrainConfig, TrainConfig, scheduleOf } from '../src/pretrain/config';
import { buildModelConfigs, createPretrainingModel, TokenizerFacts } from '../src/pretrain/models';
import {
  ElectraModel, Masking, ELECTRA_STATISTICS, SpecialTokenIds, electraMask, defaultMaxPredictions, gatherPositions,
  slotCrossEntropy, sampleTokens, writeAtPositions, electraStatistics,
} from '../src/pretrain/electra';
import { replacedTokenDetectionLoss } from '../src/models/deberta/rtd';
import { DebertaV2Config, debertaConfigToJson } from '../src/models/deberta/config';
import { Optimizer, Lamb, AdamW, DynamicLossScaler, clipGradNorm, learningRate, isBiasOrLayerNorm } from '../src/optim';
import { Random } from '../src/data/random';

export const BENCH_CONFIGS = ['tiny', 'small', 'base'] as const;
export type BenchConfigName = (typeof BENCH_CONFIGS)[number];
export type BenchDtype = 'float32' | 'bfloat16' | 'float16';
export type BenchOptimizer = 'lamb' | 'adamw';

interface ConfigShape {
  preset: string;
  generator: { hidden_ratio: number; layer_ratio: number };
  /** Ids the tokenizer holds (the table is this rounded up to a multiple of 8). */
  tokenizerVocabSize: number;
  model?: Record<string, unknown>;
}

/**
 * tiny: the tiny preset with a half-width generator (configs/tiny.json); small: hidden 256, 4
 * discriminator layers, 4 heads, a full-width 2-layer generator, vocabulary 32,000 (issue 10);
 * base: CamemBERTa-base (768 x 12 discriminator, 256 x 12 generator, vocabulary 32,008).
 */
const SHAPES: Record<BenchConfigName, ConfigShape> = {
  tiny: { preset: 'tiny', generator: { hidden_ratio: 0.5, layer_ratio: 1 }, tokenizerVocabSize: 1000, model: { max_position_embeddings: 512 } },
  small: { preset: 'small', generator: { hidden_ratio: 1, layer_ratio: 0.5 }, tokenizerVocabSize: 32000 },
  base: { preset: 'camemberta-base', generator: { hidden_ratio: 1 / 3, layer_ratio: 1 }, tokenizerVocabSize: 32001 },
};

export interface BenchBatch {
  input_ids: number[][];
  attention_mask: number[][];
}

/** Everything both sides need, as JSON (the Python worker reads the same object). */
export interface WorkerSpec {
  config: BenchConfigName;
  seq: number;
  batch: number;
  dtype: BenchDtype;
  device: string;
  threads: number;
  seed: number;
  /** The training config our side parses (trainer defaults for what is not set). */
  train_config: Record<string, unknown>;
  generator_config: Record<string, unknown>;
  discriminator_config: Record<string, unknown>;
  special: SpecialTokenIds;
  optimizer: { name: BenchOptimizer; lr: number; betas: [number, number]; eps: number; weight_decay: number; clip_norm: number };
  electra: { disc_weight: number; temperature: number; mask_prob: number; mask_token_prob: number; random_token_prob: number; max_predictions: number | null };
  batches: BenchBatch[];
  /** The reference's torch.compile. */
  compile: boolean;
  /** test/bench-train.test.ts: steps of `train_reference.py check`. */
  check_steps?: number;
}

export interface SpecOptions {
  config: BenchConfigName;
  seq: number;
  batch: number;
  dtype: BenchDtype;
  device: string;
  threads: number;
  optimizer: BenchOptimizer;
  compile: boolean;
  /** Distinct batches cycled through (4). */
  batchCount?: number;
  /** Dropout off (the smoke test compares losses, which dropout's random streams would differ in). */
  noDropout?: boolean;
  seed?: number;
}

function tokenizerFacts(shape: ConfigShape): TokenizerFacts {
  return { vocabSize: shape.tokenizerVocabSize, ids: { pad: 0, cls: 1, sep: 2, unk: 3, mask: shape.tokenizerVocabSize - 1 } };
}

/**
 * Rows as ELECTRA's example builder leaves them: most filled to the length, a quarter of them
 * shorter (the end of a document), uniform in [L/4, L]; [CLS] ... [SEP] then padding.
 */
export function benchBatches(count: number, batch: number, seq: number, special: SpecialTokenIds, vocabSize: number, seed: number): BenchBatch[] {
  return Array.from({ length: count }, (_, index) => {
    const random = new Random(seed, index, 0xbe7c);
    const rows = Array.from({ length: batch }, () => (random.random() < 0.75 ? seq : random.randint(Math.ceil(seq / 4), seq)));
    const firstFree = 5;
    const input_ids = rows.map((length) => Array.from({ length: seq }, (_, i) => {
      if (i >= length) return special.pad;
      if (i === 0) return special.cls;
      if (i === length - 1) return special.sep;
      return random.randint(firstFree, vocabSize - 2);
    }));
    const attention_mask = rows.map((length) => Array.from({ length: seq }, (_, i) => (i < length ? 1 : 0)));
    return { input_ids, attention_mask };
  });
}

/** The training config of a bench run, with the trainer's defaults for everything not set here. */
export function benchTrainConfig(options: SpecOptions): TrainConfig {
  const shape = SHAPES[options.config];
  const dropout = options.noDropout ? { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } : {};
  return parseTrainConfig({
    objective: 'electra',
    model: { type: 'deberta-v2', preset: shape.preset, config: { ...shape.model, ...dropout }, generator: shape.generator },
    electra: { embedding_sharing: 'gdes' },
    data: { seq_length: options.seq, tokenizer_vocab_size: shape.tokenizerVocabSize },
    batch: { global_batch_size: options.batch, micro_batch_size: options.batch },
    optimizer: { name: options.optimizer, ...(options.optimizer === 'adamw' ? { lr: 1e-3, betas: [0.9, 0.999] } : {}) },
    schedule: { decay: 'constant' },
    precision: options.dtype,
    device: options.device.startsWith('cuda') ? 'cuda' : 'cpu',
    threads: options.threads,
    seed: options.seed ?? 0,
  }, `bench:train ${options.config}`);
}

export function buildSpec(options: SpecOptions): WorkerSpec {
  const shape = SHAPES[options.config];
  const config = benchTrainConfig(options);
  const facts = tokenizerFacts(shape);
  const configs = buildModelConfigs(config, facts, `bench:train ${options.config}`);
  const e = config.electra;
  const o = config.optimizer;
  const seed = options.seed ?? 0;
  return {
    config: options.config, seq: options.seq, batch: options.batch, dtype: options.dtype, device: options.device,
    threads: options.threads, seed,
    train_config: JSON.parse(JSON.stringify(config)),
    generator_config: debertaConfigToJson(configs.generator!),
    discriminator_config: debertaConfigToJson(configs.main as DebertaV2Config),
    special: { pad: facts.ids.pad, cls: facts.ids.cls, sep: facts.ids.sep, mask: facts.ids.mask },
    optimizer: { name: o.name, lr: o.lr, betas: o.betas, eps: o.eps, weight_decay: o.weight_decay, clip_norm: o.clip_norm },
    electra: {
      disc_weight: e.disc_weight, temperature: e.temperature, mask_prob: e.mask_prob, mask_token_prob: e.mask_token_prob,
      random_token_prob: e.random_token_prob, max_predictions: e.max_predictions,
    },
    batches: benchBatches(options.batchCount ?? 4, options.batch, options.seq, facts.ids, facts.vocabSize, seed),
    compile: options.compile,
  };
}

// ---- our step ------------------------------------------------------------------------------------

export interface DeviceBatch {
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor<'int64'>;
}

/** Fed instead of drawn (the smoke test): the masking and the generator's samples. */
export interface FedDraws {
  masking: Masking;
  sampledIds: Tensor<'int64'>;
}

export interface StepLosses {
  loss: number;
  gen_loss: number;
  disc_loss: number;
  grad_norm: number;
}

type Mark = (phase: string) => void;

export class OurStep {
  readonly config: TrainConfig;
  readonly model: ElectraModel;
  readonly optimizer: Optimizer;
  readonly scaler: DynamicLossScaler;
  private readonly parameters: Tensor[];
  private readonly statistics: Tensor;
  private readonly maskingGenerator: Generator;
  private readonly samplingGenerator: Generator;
  /** The spec's batches on the device, cycled through by run(). */
  readonly batches: DeviceBatch[];
  private readonly tokens: number[];
  private readonly cuda: boolean;
  private stepIndex = 0;

  constructor(readonly spec: WorkerSpec) {
    setNumThreads(spec.threads);
    this.config = parseTrainConfig(spec.train_config, 'bench:train spec');
    const shape = SHAPES[spec.config];
    const configs = buildModelConfigs(this.config, tokenizerFacts(shape), 'bench:train spec');
    this.cuda = spec.device.startsWith('cuda');
    manualSeed(spec.seed);
    const initGenerator = new Generator({ seed: spec.seed });
    this.model = createPretrainingModel(this.config, configs, { generator: initGenerator, init: 'truncated' }) as ElectraModel;
    initGenerator.dispose();
    if (this.cuda) this.model.to(spec.device as 'cuda');
    this.model.train();
    const named = this.model.namedParameters();
    const o = this.config.optimizer;
    this.optimizer = o.name === 'lamb'
      ? new Lamb(named, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay, excludeFromDecayAndAdaptation: isBiasOrLayerNorm })
      : new AdamW(named, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
    this.parameters = named.map(([, p]) => p);
    this.scaler = new DynamicLossScaler({ enabled: spec.dtype === 'float16', device: spec.device });
    this.maskingGenerator = new Generator({ seed: spec.seed * 2 + 1, device: spec.device });
    this.samplingGenerator = new Generator({ seed: spec.seed * 2 + 2, device: spec.device });
    this.statistics = keep(zeros([ELECTRA_STATISTICS.length], { device: spec.device }));
    const onDevice = (rows: number[][]) => keep(tidy(() => {
      const t = tensor(rows, { dtype: 'int64' }) as Tensor<'int64'>;
      return this.cuda ? t.to<'int64'>({ device: spec.device }) : t;
    }));
    this.batches = spec.batches.map((b) => ({ inputIds: onDevice(b.input_ids), attentionMask: onDevice(b.attention_mask) }));
    this.tokens = spec.batches.map((b) => b.attention_mask.flat().reduce((n, v) => n + v, 0));
  }

  info(): Record<string, unknown> {
    return {
      libtorch: torchVersion,
      allocator: cpuAllocatorStats() ? 'camemberta caching CPU allocator (blocks >= 256 KiB) over glibc malloc' : 'libtorch default CPU allocator (glibc malloc)',
      optimizer: this.config.optimizer.name === 'lamb' ? 'Lamb (libtorch _fused_adam_ moments + foreach trust ratios)' : 'AdamW (libtorch _fused_adamw_)',
      clip: 'clipGradNorm (foreach norms, one device-side scale)',
      compile: 'eager (no graph compiler)',
      attention: 'DeBERTa disentangled attention (src/models/deberta)',
      dropout: this.cuda ? 'aten (CUDA fused kernel)' : `${cpuDropout()} (CAMEMBERTA_CPU_DROPOUT)`,
      mkl: this.cuda ? null : mklCpuDispatch(),
      threads: getNumThreads(),
      parameters: this.model.numParameters(),
    };
  }

  private sync(): void {
    if (this.cuda) synchronize();
  }

  private inPrecision<T>(fn: () => T): T {
    const dtype = this.spec.dtype;
    return dtype === 'float32' ? fn() : autocast({ device: this.cuda ? 'cuda' : 'cpu', dtype }, fn);
  }

  /** The trainer's per-micro-batch reseeding (src/pretrain/trainer.ts microBatchSeeds). */
  private reseed(step: number): void {
    const random = new Random(this.spec.seed, step, 0, 0x5eed);
    const draw = () => BigInt(Math.floor(random.random() * 2 ** 53));
    manualSeed(draw());
    this.maskingGenerator.manualSeed(draw());
    this.samplingGenerator.manualSeed(draw());
  }

  private maskingOptions() {
    const e = this.config.electra;
    return { maskProb: e.mask_prob, maskTokenProb: e.mask_token_prob, randomTokenProb: e.random_token_prob, maxPredictions: e.max_predictions ?? undefined };
  }

  /**
   * ElectraModel.forward split at the phase marks (the same calls in the same order; kept in step
   * with src/pretrain/electra.ts by the smoke test, which runs both).
   */
  private phasedForward(batch: DeviceBatch, mark: Mark): { loss: Tensor; statistics: Tensor } {
    const model = this.model;
    const e = this.config.electra;
    const masking = electraMask(batch.inputIds, batch.attentionMask, this.spec.special, this.maskingOptions(), this.maskingGenerator, SHAPES[this.spec.config].tokenizerVocabSize);
    mark('masking');
    const { lastHiddenState } = model.generator.deberta.forward({ inputIds: masking.inputIds, attentionMask: batch.attentionMask });
    const genLogits = model.generator.head(gatherPositions(lastHiddenState, masking.positions));
    const genLoss = slotCrossEntropy(genLogits, masking.originalIds, masking.weights);
    mark('generator_forward');
    const sampledIds = sampleTokens(genLogits, e.temperature, this.samplingGenerator);
    mark('sampling');
    const used = masking.weights.gt(0);
    const discInputIds = writeAtPositions(batch.inputIds, masking.positions, where(used, sampledIds, masking.originalIds));
    const replaced = discInputIds.ne(batch.inputIds);
    const padIndex = model.discriminator.deberta.embeddings.word_embeddings.paddingIdx ?? -1;
    const wordEmbeddings = embedding(model.generatorEmbeddings.detach(), discInputIds).add(embedding(model.embedding_delta!, discInputIds, padIndex));
    const hidden = model.discriminator.deberta.forward({ inputIds: discInputIds, attentionMask: batch.attentionMask }, { wordEmbeddings }).lastHiddenState;
    const discLogits = model.discriminator.discriminator_predictions.forward(hidden).float();
    const discLoss = replacedTokenDetectionLoss(discLogits, replaced, batch.attentionMask);
    const loss = genLoss.add(discLoss.mul(e.disc_weight));
    mark('discriminator_forward');
    const statistics = electraStatistics({ loss, genLoss, discLoss, genLogits, discLogits, replaced, attentionMask: batch.attentionMask, masking });
    mark('statistics');
    return { loss, statistics };
  }

  /** One optimizer step on `batch` (micro-batch = global batch), as the trainer takes it. */
  step(batch: DeviceBatch, fed?: FedDraws, mark?: Mark): StepLosses | null {
    this.reseed(this.stepIndex);
    const e = this.config.electra;
    const lr = learningRate(scheduleOf(this.config), this.stepIndex);
    const read = fed !== undefined;
    const losses = tidy(() => {
      const out = this.inPrecision(() => {
        if (mark) return this.phasedForward(batch, mark);
        const masking = fed?.masking ?? electraMask(batch.inputIds, batch.attentionMask, this.spec.special, this.maskingOptions(), this.maskingGenerator, SHAPES[this.spec.config].tokenizerVocabSize);
        return this.model.forward(batch, masking, { discWeight: e.disc_weight, temperature: e.temperature, generator: this.samplingGenerator, sampledIds: fed?.sampledIds });
      });
      this.scaler.scaleLoss(out.loss.div(1)).backward();
      noGrad(() => this.statistics.add_(out.statistics));
      mark?.('backward');
      if (!read) return null;
      const values = out.statistics.cpu().toTypedArray() as Float32Array;
      return { loss: values[0], gen_loss: values[1], disc_loss: values[2] };
    });
    const foundInf = keep(this.scaler.unscale(this.parameters));
    const norm = tidy(() => {
      const total = this.config.optimizer.clip_norm > 0 ? clipGradNorm(this.parameters, this.config.optimizer.clip_norm) : null;
      mark?.('clip');
      this.optimizer.step(lr, this.scaler.enabled ? { foundInf } : undefined);
      this.scaler.update(foundInf);
      this.optimizer.zeroGrad();
      mark?.('optimizer');
      return read && total ? total.item() : NaN;
    });
    dispose(foundInf);
    this.stepIndex += 1;
    return losses ? { ...losses, grad_norm: norm } : null;
  }

  private nextBatch(): [DeviceBatch, number] {
    const index = this.stepIndex % this.batches.length;
    return [this.batches[index], this.tokens[index]];
  }

  run(steps: number): { ms: number[]; tokens: number } {
    const ms: number[] = [];
    let tokens = 0;
    for (let i = 0; i < steps; i++) {
      const [batch, count] = this.nextBatch();
      const start = process.hrtime.bigint();
      this.step(batch);
      this.sync();
      ms.push(Number(process.hrtime.bigint() - start) / 1e6);
      tokens += count;
    }
    return { ms, tokens: tokens / Math.max(steps, 1) };
  }

  /** Mean ms per phase over `steps` steps (the device synchronised at each mark). */
  phases(steps: number): { phases: Record<string, number> } {
    const totals: Record<string, number> = {};
    for (let i = 0; i < steps; i++) {
      const [batch] = this.nextBatch();
      let last = process.hrtime.bigint();
      this.step(batch, undefined, (phase) => {
        this.sync();
        const now = process.hrtime.bigint();
        totals[phase] = (totals[phase] ?? 0) + Number(now - last) / 1e6;
        last = now;
      });
    }
    return { phases: Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, v / steps])) };
  }

  /** The statistics summed on the device since construction (ELECTRA_STATISTICS order): a host read. */
  statisticsSums(): number[] {
    return Array.from(tidy(() => this.statistics.cpu().toTypedArray() as Float32Array));
  }

  /** RSS high-water mark of this process, MiB (CUDA memory has no binding yet). */
  peakMb(): number | null {
    if (this.cuda) return null;
    return process.resourceUsage().maxRSS / 1024;
  }

  dispose(): void {
    for (const b of this.batches) dispose([b.inputIds, b.attentionMask]);
    dispose(this.statistics);
    this.maskingGenerator.dispose();
    this.samplingGenerator.dispose();
    this.optimizer.dispose();
    this.scaler.dispose();
    this.model.dispose();
  }
}

// ---- model FLOPs -----------------------------------------------------------------------------------

interface EncoderShape {
  hidden: number;
  layers: number;
  intermediate: number;
  embedding: number;
  convKernel: number;
  /** Rows of the relative-position table the attention reads (2 x attention span). */
  relativeRows: number;
}

function encoderShape(json: Record<string, unknown>): EncoderShape {
  const hidden = json.hidden_size as number;
  const buckets = (json.position_buckets as number) ?? -1;
  const maxRelative = (json.max_relative_positions as number) ?? -1;
  const span = buckets > 0 ? buckets : maxRelative > 0 ? maxRelative : (json.max_position_embeddings as number);
  return {
    hidden, layers: json.num_hidden_layers as number, intermediate: json.intermediate_size as number,
    embedding: (json.embedding_size as number) ?? hidden, convKernel: (json.conv_kernel_size as number) ?? 0, relativeRows: 2 * span,
  };
}

/** Forward matmul FLOPs (2 per multiply-add) of a DeBERTa-V3 encoder over B rows of L tokens. */
function encoderForwardFlops(shape: EncoderShape, B: number, L: number): number {
  const T = B * L;
  const { hidden: H, intermediate: I, relativeRows: R } = shape;
  const projections = 2 * T * 4 * H * H;
  const ffn = 2 * T * 2 * H * I;
  const attention = 2 * 2 * T * L * H; // QK^T and AV
  const disentangled = 2 * 2 * T * R * H; // c2p and p2c scores against the relative keys / queries
  const relativeProjections = 2 * 2 * R * H * H; // the relative table through the shared key and query projections
  const perLayer = projections + ffn + attention + disentangled + relativeProjections;
  const embedProjection = shape.embedding !== H ? 2 * T * shape.embedding * H : 0;
  const conv = shape.convKernel > 0 ? 2 * T * H * H * shape.convKernel : 0;
  return shape.layers * perLayer + embedProjection + conv;
}

/**
 * Model FLOPs of one training step (forward x 3: backward is twice the forward), attention
 * included: generator encoder, its MLM head on the N prediction slots (transform + tied decoder),
 * discriminator encoder and its RTD head. Embedding lookups and elementwise work are not counted.
 */
export function modelFlopsPerStep(spec: WorkerSpec): number {
  const { batch: B, seq: L } = spec;
  const generator = encoderShape(spec.generator_config);
  const discriminator = encoderShape(spec.discriminator_config);
  const slots = B * (spec.electra.max_predictions ?? defaultMaxPredictions(spec.electra.mask_prob, L));
  const vocab = spec.generator_config.vocab_size as number;
  const generatorHead = 2 * slots * generator.hidden * generator.embedding + 2 * slots * generator.embedding * vocab;
  const rtdHead = 2 * B * L * discriminator.hidden * discriminator.hidden + 2 * B * L * discriminator.hidden;
  const forward = encoderForwardFlops(generator, B, L) + generatorHead + encoderForwardFlops(discriminator, B, L) + rtdHead;
  return 3 * forward;
}

/** Dense tensor-core peaks (TFLOP/s) by GPU name and dtype; float32 is the non-tensor-core rate. */
const GPU_PEAKS: Array<[RegExp, Record<BenchDtype, number>]> = [
  [/H200|H100.*(SXM|HBM3)|GH200/i, { bfloat16: 989, float16: 989, float32: 67 }],
  [/H100/i, { bfloat16: 756, float16: 756, float32: 51 }],
  [/A100/i, { bfloat16: 312, float16: 312, float32: 19.5 }],
  [/L40S/i, { bfloat16: 362, float16: 362, float32: 91.6 }],
  [/L4\b/i, { bfloat16: 121, float16: 121, float32: 30.3 }],
  [/A10G?\b/i, { bfloat16: 125, float16: 125, float32: 31.2 }],
  [/V100/i, { bfloat16: 0, float16: 125, float32: 15.7 }],
];

export function gpuPeakTflops(name: string, dtype: BenchDtype): number | null {
  for (const [pattern, peaks] of GPU_PEAKS) if (pattern.test(name)) return peaks[dtype] || null;
  return null;
}
