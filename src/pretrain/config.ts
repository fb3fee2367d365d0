// The training config: a plain typed object read from JSON, validated against a zod schema at
// start (unknown keys, types, ranges), then by the cross-field rules (batch sizes that divide, a
// schedule that fits, an objective that fits the model). Every problem names its key and file;
// each round reports all of its problems together, before anything is written. docs/CONFIG.md
// documents each key.
import * as fs from 'fs';
import * as path from 'path';
import { z } from 'zod';
import { validateSchedule } from '../optim/schedule';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const probability = z.number().min(0).max(1);
const hfConfig = z.record(z.string(), z.unknown());

const maskingShape = {
  mask_prob: z.number().gt(0).lt(1),
  mask_token_prob: probability,
  random_token_prob: probability,
  /** Slots per row; null: int((mask_prob + 0.005) * seq_length). */
  max_predictions: positiveInt.nullable(),
};

export const trainConfigSchema = z.object({
  objective: z.enum(['electra', 'mlm']).default('electra'),
  model: z.object({
    /** The model family: ELECTRA needs deberta-v2; MLM runs either. */
    type: z.enum(['deberta-v2', 'roberta']).default('deberta-v2'),
    /** Sizes to start from; `config` overrides any field. */
    preset: z.enum(['tiny', 'small', 'camemberta-base', 'camembert-base']).default('tiny'),
    /** HF config.json fields of the (discriminator or MLM) model; vocab_size "auto" or absent: the tokenizer's size padded to a multiple of 8. */
    config: hfConfig.default({}),
    generator: z.object({
      /** Generator width / discriminator width, rounded up to a multiple of the head size (CamemBERTa 1/3, Microsoft 1). */
      hidden_ratio: z.number().gt(0).max(1).default(1 / 3),
      /** Generator depth / discriminator depth (CamemBERTa 1, Microsoft 0.5). */
      layer_ratio: z.number().gt(0).max(1).default(1),
      /** HF config fields of the generator, applied after the ratios (absolute sizes). */
      config: hfConfig.default({}),
    }).strict().default({ hidden_ratio: 1 / 3, layer_ratio: 1, config: {} }),
  }).strict().default({ type: 'deberta-v2', preset: 'tiny', config: {}, generator: { hidden_ratio: 1 / 3, layer_ratio: 1, config: {} } }),
  electra: z.object({
    embedding_sharing: z.enum(['gdes', 'es', 'none']).default('gdes'),
    disc_weight: z.number().nonnegative().default(50),
    temperature: z.number().positive().default(1),
    mask_prob: maskingShape.mask_prob.default(0.15),
    mask_token_prob: maskingShape.mask_token_prob.default(0.85),
    random_token_prob: maskingShape.random_token_prob.default(0),
    max_predictions: maskingShape.max_predictions.default(null),
  }).strict().prefault({}),
  mlm: z.object({
    mask_prob: maskingShape.mask_prob.default(0.15),
    mask_token_prob: maskingShape.mask_token_prob.default(0.8),
    random_token_prob: maskingShape.random_token_prob.default(0.1),
    max_predictions: maskingShape.max_predictions.default(null),
  }).strict().prefault({}),
  data: z.object({
    /** Prepared shards (a directory with manifest.json) or raw .txt[.gz]/.jsonl[.gz] files or directories; --data overrides. */
    path: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).nullable().default(null),
    seq_length: z.number().int().min(8).max(4096).default(128),
    /** electra: NVIDIA's segment pairs; full-sentences: RoBERTa's packing. */
    examples: z.enum(['electra', 'full-sentences']).default('electra'),
    shuffle_buffer: nonNegativeInt.default(10_000),
    /** For raw text: a SentencePiece model to use, or null to train one on the data. */
    tokenizer: z.string().min(1).nullable().default(null),
    /** Pieces of a tokenizer trained on the data. */
    tokenizer_vocab_size: z.number().int().min(16).default(32_000),
    /** Fraction of documents prepare holds out for evaluation (raw text only). */
    held_out_fraction: z.number().min(0).lt(1).default(0.01),
    /** Evaluation data: prepared shards or raw text; null: the held-out split of the training data. */
    eval_path: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).nullable().default(null),
  }).strict().prefault({}),
  batch: z.object({
    /** Examples per optimizer step, over all ranks and accumulation steps. */
    global_batch_size: positiveInt.default(32),
    /** Examples per forward/backward on one rank. */
    micro_batch_size: positiveInt.default(32),
  }).strict().prefault({}),
  optimizer: z.object({
    name: z.enum(['lamb', 'adamw']).default('lamb'),
    lr: z.number().positive().default(6e-3),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.878, 0.974]),
    eps: z.number().positive().default(1e-6),
    weight_decay: z.number().nonnegative().default(0.01),
    /** Clip the global gradient norm to this (0: no clipping). */
    clip_norm: z.number().nonnegative().default(1),
  }).strict().prefault({}),
  schedule: z.object({
    warmup_steps: nonNegativeInt.default(0),
    decay: z.enum(['polynomial', 'linear', 'constant']).default('polynomial'),
    power: z.number().positive().default(0.5),
    end_lr: z.number().nonnegative().default(0),
    /** Steps of the decay; null: max_steps. */
    total_steps: positiveInt.nullable().default(null),
  }).strict().prefault({}),
  max_steps: positiveInt.default(1000),
  /** Wall-time budget in seconds (0: none): the run ends, checkpoints and exports at the first step past it; a resumed run counts the time before. The schedule still runs over max_steps. */
  max_seconds: z.number().nonnegative().default(0),
  /** auto: bfloat16 on CUDA and on CPUs with native bfloat16 (AVX-512 BF16 / AMX), else float32. */
  precision: z.enum(['auto', 'float32', 'bfloat16', 'float16']).default('float32'),
  device: z.enum(['auto', 'cpu', 'cuda']).default('cpu'),
  /** Intra-op CPU threads per process; 0: all cores divided among the local ranks. */
  threads: nonNegativeInt.default(0),
  seed: nonNegativeInt.default(0),
  loss_scale: z.object({
    /** Dynamic loss scaling; null: on for float16 only (it also runs, harmlessly, in float32 and bfloat16). */
    enabled: z.boolean().nullable().default(null),
    init_scale: z.number().positive().default(2 ** 16),
    growth_factor: z.number().gt(1).default(2),
    backoff_factor: z.number().gt(0).lt(1).default(0.5),
    growth_interval: positiveInt.default(2000),
  }).strict().prefault({}),
  logging: z.object({
    every: positiveInt.default(10),
    tensorboard: z.boolean().default(true),
    progress: z.boolean().default(true),
  }).strict().prefault({}),
  eval: z.object({
    /** Evaluate every N steps (0: never) and at the end. */
    every: nonNegativeInt.default(0),
    /** Micro-batches per evaluation. */
    batches: positiveInt.default(20),
  }).strict().prefault({}),
  checkpoint: z.object({
    /** Save every N steps (0: only at the end and on SIGINT/SIGTERM). */
    every: nonNegativeInt.default(500),
    /** Complete checkpoints kept (the newest). */
    keep: positiveInt.default(2),
  }).strict().prefault({}),
  /** A previous run's directory (or one of its checkpoints) to start from: weights and optimizer state carried over, step and schedule restarted (phase 2). */
  init_from: z.string().min(1).nullable().default(null),
  /** Continued pretraining from HF model directories (src/pretrain/init.ts); the architecture then comes from their config.json. */
  init: z.object({
    /** The discriminator (electra) or the model (mlm): a DebertaV2Model / ForMaskedLM / ForTokenClassification-style directory. */
    discriminator: z.string().min(1).nullable().default(null),
    /** A DebertaV2ForMaskedLM directory; null: a fresh generator at model.generator's ratios. */
    generator: z.string().min(1).nullable().default(null),
    /** A tensor whose shape differs from the model's keeps its overlapping block (the rest fresh) instead of being an error. */
    allow_resize: z.boolean().default(false),
  }).strict().prefault({}),
  /** Several processes (launch.js, torchrun, SLURM): docs/DISTRIBUTED.md. Ignored by one process. */
  distributed: z.object({
    /** gloo between CPU processes, nccl between GPUs; auto: nccl on CUDA, else gloo. */
    backend: z.enum(['auto', 'gloo', 'nccl']).default('auto'),
    /** A rendezvous or collective that waits longer than this fails, naming the ranks it waited for (rank 0's checkpoint writes and evaluation count too). */
    timeout_s: z.number().positive().default(600),
    /** Gradients are all-reduced in buckets of this size, each as soon as backward has filled it. */
    bucket_cap_mb: z.number().positive().default(25),
    /** false: one all-reduce of all gradients after backward instead of buckets during it (for measuring; slower). */
    overlap: z.boolean().default(true),
  }).strict().prefault({}),
  export: z.object({
    at_end: z.boolean().default(true),
    /** Also write pytorch_model.bin. */
    pytorch_bin: z.boolean().default(false),
  }).strict().prefault({}),
  output_dir: z.string().min(1).default('runs/train'),
}).strict();

export type TrainConfig = z.infer<typeof trainConfigSchema>;

/** Keys a resumed run may change; any other difference from the checkpoint's config is an error. */
export const RESUMABLE_KEYS = [
  'max_steps', 'max_seconds', 'schedule.total_steps', 'threads', 'output_dir', 'data.path', 'data.eval_path',
  'logging.every', 'logging.tensorboard', 'logging.progress', 'eval.every', 'eval.batches',
  'checkpoint.every', 'checkpoint.keep', 'export.at_end', 'export.pytorch_bin', 'device',
  'distributed.backend', 'distributed.timeout_s', 'distributed.bucket_cap_mb', 'distributed.overlap',
];

export interface ConfigProblem {
  key: string;
  message: string;
}

/** A config that cannot be used: every problem with its key, and the file they come from. */
export class TrainConfigError extends Error {
  constructor(readonly source: string, readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${source}: ${p.key}: ${p.message}`).join('\n'));
    this.name = 'TrainConfigError';
  }
}

/**
 * Applies `key.path=value` overrides (value parsed as JSON when it parses, else taken as a
 * string) to a raw config object.
 */
export function applyOverrides(raw: Record<string, unknown>, overrides: readonly string[]): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const override of overrides) {
    const eq = override.indexOf('=');
    if (eq <= 0) throw new TrainConfigError('--set', [{ key: override, message: 'expected key.path=value' }]);
    const keyPath = override.slice(0, eq).split('.');
    const text = override.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
    let node: Record<string, unknown> = out;
    for (const [i, part] of keyPath.entries()) {
      if (part === '' || part === '__proto__' || part === 'constructor' || part === 'prototype') {
        throw new TrainConfigError('--set', [{ key: override.slice(0, eq), message: `bad key segment ${JSON.stringify(part)}` }]);
      }
      if (i === keyPath.length - 1) {
        node[part] = value;
      } else {
        const next = node[part];
        if (next === undefined) node[part] = {};
        else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
          throw new TrainConfigError('--set', [{ key: keyPath.slice(0, i + 1).join('.'), message: 'is not an object' }]);
        }
        node = node[part] as Record<string, unknown>;
      }
    }
  }
  return out;
}

function issuePath(pathParts: readonly PropertyKey[]): string {
  return pathParts.length ? pathParts.map(String).join('.') : '(root)';
}

/** Schema then cross-field validation of a raw object; `source` names the file in errors. */
export function parseTrainConfig(raw: unknown, source: string, context: { worldSize?: number } = {}): TrainConfig {
  const parsed = trainConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems: ConfigProblem[] = [];
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.push({ key: issuePath([...issue.path, key]), message: 'unknown key' });
      } else {
        problems.push({ key: issuePath(issue.path), message: issue.message });
      }
    }
    throw new TrainConfigError(source, problems);
  }
  const config = parsed.data;
  const problems = crossFieldProblems(config, context.worldSize ?? 1);
  if (problems.length) throw new TrainConfigError(source, problems);
  return config;
}

function crossFieldProblems(config: TrainConfig, worldSize: number): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const { global_batch_size: global, micro_batch_size: micro } = config.batch;
  if (global % (micro * worldSize) !== 0) {
    problems.push({
      key: 'batch.global_batch_size',
      message: `${global} is not a multiple of batch.micro_batch_size x world size = ${micro} x ${worldSize} = ${micro * worldSize}`,
    });
  }
  if (config.objective === 'electra' && config.model.type !== 'deberta-v2') {
    problems.push({ key: 'model.type', message: `the electra objective needs a deberta-v2 model, got ${config.model.type}` });
  }
  const presetFamily = config.model.preset === 'camembert-base' ? 'roberta' : config.model.preset === 'camemberta-base' ? 'deberta-v2' : null;
  if (presetFamily && presetFamily !== config.model.type) {
    problems.push({ key: 'model.preset', message: `${config.model.preset} is a ${presetFamily} preset, but model.type is ${config.model.type}` });
  }
  const masking = config.objective === 'electra' ? config.electra : config.mlm;
  const section = config.objective;
  if (masking.mask_token_prob + masking.random_token_prob > 1 + 1e-12) {
    problems.push({ key: `${section}.random_token_prob`, message: `mask_token_prob + random_token_prob = ${masking.mask_token_prob + masking.random_token_prob} exceeds 1` });
  }
  if (masking.max_predictions !== null && masking.max_predictions > config.data.seq_length) {
    problems.push({ key: `${section}.max_predictions`, message: `${masking.max_predictions} exceeds data.seq_length ${config.data.seq_length}` });
  }
  // The schedule's own messages name its fields; say them as config keys.
  const keyOf: Record<string, string> = {
    peakLr: 'optimizer.lr', endLr: 'schedule.end_lr', warmupSteps: 'schedule.warmup_steps', decay: 'schedule.decay', power: 'schedule.power',
    totalSteps: config.schedule.total_steps === null ? 'max_steps' : 'schedule.total_steps',
  };
  for (const message of validateSchedule(scheduleOf(config))) {
    const field = /^\w+/.exec(message)?.[0] ?? '';
    const text = message.replace(/\b(peakLr|endLr|warmupSteps|totalSteps)\b/g, (name) => keyOf[name]);
    problems.push({ key: keyOf[field] ?? 'schedule', message: text });
  }
  if (config.init.generator !== null && config.init.discriminator === null) {
    problems.push({ key: 'init.generator', message: 'needs init.discriminator (a generator alone cannot start a run)' });
  }
  if (config.init.generator !== null && config.objective !== 'electra') {
    problems.push({ key: 'init.generator', message: `the ${config.objective} objective has no generator` });
  }
  if (config.init.discriminator !== null && config.init_from !== null) {
    problems.push({ key: 'init.discriminator', message: 'init_from already gives the weights: use one of the two' });
  }
  if (config.objective === 'mlm' && config.data.examples === 'electra' && config.model.type === 'roberta') {
    problems.push({ key: 'data.examples', message: 'RoBERTa has one segment type: use "full-sentences" examples' });
  }
  return problems;
}

export function scheduleOf(config: TrainConfig) {
  return {
    peakLr: config.optimizer.lr,
    warmupSteps: config.schedule.warmup_steps,
    totalSteps: config.schedule.total_steps ?? config.max_steps,
    decay: config.schedule.decay,
    power: config.schedule.power,
    endLr: config.schedule.end_lr,
  };
}

/** Reads a JSON config file (a clear error for a missing file or bad JSON), with --set overrides. */
export function loadTrainConfig(file: string, overrides: readonly string[] = [], context: { worldSize?: number } = {}): TrainConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new TrainConfigError(file, [{ key: '(file)', message: `cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` }]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new TrainConfigError(file, [{ key: '(file)', message: `not valid JSON: ${(error as Error).message}` }]);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new TrainConfigError(file, [{ key: '(root)', message: 'a training config must be a JSON object' }]);
  }
  const withOverrides = applyOverrides(raw as Record<string, unknown>, overrides);
  return parseTrainConfig(withOverrides, file, context);
}

/** Dotted keys whose values differ between two configs, except `allowed` (default: those a resumed run may change). */
export function differingKeys<C extends object = TrainConfig>(a: C, b: C, allowed: readonly string[] = RESUMABLE_KEYS): string[] {
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, prefix: string) => {
    if (allowed.includes(prefix)) return;
    const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(x) && isObject(y)) {
      const keys = new Set([...Object.keys(x as object), ...Object.keys(y as object)]);
      for (const key of [...keys].sort()) walk((x as Record<string, unknown>)[key], (y as Record<string, unknown>)[key], prefix ? `${prefix}.${key}` : key);
    } else if (JSON.stringify(x) !== JSON.stringify(y)) {
      out.push(prefix);
    }
  };
  walk(a, b, '');
  return out;
}

/** The resolved config as written into the output directory (every default filled in). */
export function configJson(config: TrainConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

export function resolveOutputDir(config: TrainConfig, cwd = process.cwd()): string {
  return path.resolve(cwd, config.output_dir);
}
