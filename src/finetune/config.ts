// The fine-tuning config: a JSON file (configs/finetune_*.json) and/or flags, validated at start.
// Every problem is reported at once, each naming its key and the file (or flag) it came from.
import * as fs from 'fs';
import { z } from 'zod';
import { UsageError } from '../cli/args';
import { differingKeys } from '../pretrain/config';

export const TASKS = ['token-classification', 'sequence-classification', 'dependency-parsing'] as const;
export type Task = (typeof TASKS)[number];

const positiveInt = z.number().int().min(1);

export const FinetuneConfigSchema = z.object({
  task: z.enum(TASKS),
  /** HF-format model directory (config.json, weights, SentencePiece tokenizer). */
  model: z.string().min(1),
  train: z.string().min(1),
  dev: z.string().min(1),
  test: z.string().min(1).nullable().default(null),
  output_dir: z.string().min(1),
  seed: z.number().int().min(0).default(42),
  /** Train the same architecture from random initialisation (the baseline), ignoring the weights. */
  random_init: z.boolean().default(false),
  epochs: positiveInt.max(1000).default(3),
  /** Stop after this many optimizer steps (null: epochs alone decide); the schedule spans min(steps, epochs). */
  max_steps: positiveInt.nullable().default(null),
  batch_size: positiveInt.max(4096).default(16),
  eval_batch_size: positiveInt.max(4096).default(32),
  lr: z.number().gt(0).max(1).default(5e-5),
  /** Learning rate of the task head (the biaffine parser's MLPs); null: lr. */
  head_lr: z.number().gt(0).max(1).nullable().default(null),
  warmup_ratio: z.number().min(0).max(1).default(0.1),
  weight_decay: z.number().min(0).default(0.01),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  eps: z.number().gt(0).default(1e-6),
  clip_norm: z.number().min(0).default(1.0),
  /** Sub-words per row, special tokens included. */
  max_length: positiveInt.max(65536).default(512),
  /** Token classification: the label column (CoNLL-U name such as UPOS, XPOS, DEPREL; a 0-based position; "last"). */
  label_column: z.string().min(1).default('UPOS'),
  /** Input format; auto: .conllu / ten tab-separated columns is CoNLL-U, else CoNLL-2003; .tsv is TSV, else JSONL. */
  format: z.enum(['auto', 'conllu', 'conll2003', 'jsonl', 'tsv']).default('auto'),
  text_field: z.string().min(1).default('text'),
  text_pair_field: z.string().min(1).default('text_pair'),
  label_field: z.string().min(1).default('label'),
  parser: z.object({
    arc_size: positiveInt.max(8192).default(500),
    rel_size: positiveInt.max(8192).default(100),
    mlp_dropout: z.number().min(0).lt(1).default(0.33),
  }).strict().default({ arc_size: 500, rel_size: 100, mlp_dropout: 0.33 }),
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  precision: z.enum(['float32', 'bfloat16', 'float16']).default('float32'),
  /** Intra-op CPU threads; 0: one per core. */
  threads: z.number().int().min(0).max(4096).default(0),
  /** Several processes (launch.js, torchrun, SLURM): as train.js's distributed section (docs/CONFIG.md). */
  distributed: z.object({
    /** gloo between CPU processes, nccl between GPUs; auto: nccl on CUDA, else gloo. */
    backend: z.enum(['auto', 'gloo', 'nccl']).default('auto'),
    /** A rendezvous or collective that waits longer than this fails, naming the ranks it waited for (rank 0's evaluations do not count: the others wait for them without a limit). */
    timeout_s: z.number().positive().default(600),
    /** Gradients are all-reduced in buckets of this size, each as soon as backward has filled it. */
    bucket_cap_mb: z.number().positive().default(25),
  }).strict().prefault({}),
  logging: z.object({
    every: positiveInt.default(10),
    progress: z.boolean().default(true),
    tensorboard: z.boolean().default(true),
  }).strict().default({ every: 10, progress: true, tensorboard: true }),
}).strict();

export type FinetuneConfig = z.infer<typeof FinetuneConfigSchema>;

/** Keys whose values differ between two ranks' configs (output_dir may: DataParallel ignores it). */
export function differingFinetuneKeys(a: FinetuneConfig, b: FinetuneConfig): string[] {
  return differingKeys(a, b, []);
}

export class FinetuneConfigError extends UsageError {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null || Array.isArray(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

/**
 * The config from an optional JSON file, then `overrides` (flags, already typed), then `--set
 * key.path=value` strings (the value parsed as JSON when it parses). `source` names the file in errors.
 */
export function loadFinetuneConfig(file: string | undefined, overrides: Record<string, unknown>, sets: readonly string[] = []): FinetuneConfig {
  let json: Record<string, unknown> = {};
  const source = file ?? 'flags';
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new FinetuneConfigError([`${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
    }
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new FinetuneConfigError([`${file}: not valid JSON: ${(error as Error).message}`]);
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FinetuneConfigError([`${file}: must hold a JSON object`]);
  }
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) setPath(json, key, value);
  for (const assignment of sets) {
    const at = assignment.indexOf('=');
    if (at <= 0) throw new FinetuneConfigError([`--set ${assignment}: expected key.path=value`]);
    const raw = assignment.slice(at + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a bare string
    }
    setPath(json, assignment.slice(0, at), value);
  }
  const result = FinetuneConfigSchema.safeParse(json);
  if (!result.success) {
    throw new FinetuneConfigError(result.error.issues.map((issue) => {
      const key = issue.path.join('.') || '(config)';
      if (issue.code === 'unrecognized_keys') return `${source}: ${key}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`;
      if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
        return `${source}: ${key}: required (--${key.replace(/_/g, '-')}${file === undefined ? ', or the key in a --config file' : ''})`;
      }
      return `${source}: ${key}: ${issue.message}`;
    }));
  }
  return result.data;
}
