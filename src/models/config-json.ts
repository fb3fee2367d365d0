// Reading HF config.json objects at the boundary: each field is checked for type and range,
// absent fields take HF's default, every problem is collected (one bad file reports all its bad
// keys at once) and unknown keys are kept so a config round-trips through us unchanged.
import * as fs from 'fs';

export interface ConfigProblem {
  key: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: ConfigProblem[]) {
    super(`${source}: invalid config:\n${problems.map((p) => `  "${p.key}": ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Activation names (HF `ACT2FN` keys) the models implement. "gelu" is the exact erf GELU;
 * "gelu_new" and "gelu_pytorch_tanh" are the tanh approximation; "swish" is an alias of "silu".
 */
export const ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu', 'silu', 'swish', 'tanh', 'sigmoid'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/**
 * Sane upper bounds of size fields. Each is far above any released model (the largest have a
 * 256k vocabulary, hidden size 16,384, 126 layers, 128k positions) yet small enough that a typo
 * or a hostile file (vocab_size 1e12, hidden_size 2^30, position_buckets 1e9) is a config error
 * naming the key instead of an allocation of terabytes.
 */
export const SIZE_LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  num_hidden_layers: 1 << 10,
  num_attention_heads: 1 << 12,
  intermediate_size: 1 << 18,
  max_position_embeddings: 1 << 20,
  type_vocab_size: 1 << 16,
  num_labels: 1 << 16,
  /** Relative positions (DeBERTa's max_relative_positions, position_buckets), head and pooler widths. */
  positions: 1 << 20,
  width: 1 << 16,
  conv_kernel_size: 1 << 10,
} as const;

/**
 * Elements of one weight matrix. 2^32 float32 elements is 16 GiB: past that, fields each within
 * their own bound (a huge vocabulary times a huge width) still describe an impossible model.
 */
export const MAX_MATRIX_ELEMENTS = 2 ** 32;

export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export class ConfigReader {
  readonly problems: ConfigProblem[] = [];
  private readonly used = new Set<string>();
  private readonly json: Record<string, unknown>;

  constructor(json: unknown, readonly source: string) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      this.json = {};
      this.problems.push({ key: '(root)', message: `a config must be a JSON object, got ${describeValue(json)}` });
    } else {
      this.json = json as Record<string, unknown>;
    }
  }

  has(key: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.json, key);
  }

  /** The raw value; marks the key as known. */
  raw(key: string): unknown {
    this.used.add(key);
    return this.has(key) ? this.json[key] : undefined;
  }

  problem(key: string, message: string): void {
    this.problems.push({ key, message });
  }

  /** The raw value without marking the key as known (it stays among the extras). */
  peek(key: string): unknown {
    return this.has(key) ? this.json[key] : undefined;
  }

  /** A problem on `key` when rows x cols (one weight matrix) exceeds MAX_MATRIX_ELEMENTS. */
  matrix(key: string, rows: number, cols: number, what: string): void {
    if (rows * cols > MAX_MATRIX_ELEMENTS) {
      this.problem(key, `${what} would be ${rows} x ${cols} = ${rows * cols} elements, over the ${MAX_MATRIX_ELEMENTS} a weight matrix may hold`);
    }
  }

  int(key: string, fallback: number, range: { min?: number; max?: number } = {}): number {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      this.problem(key, `must be an integer, got ${describeValue(value)}`);
      return fallback;
    }
    return this.inRange(key, value, range) ? value : fallback;
  }

  number(key: string, fallback: number, range: { min?: number; max?: number; above?: number } = {}): number {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.problem(key, `must be a finite number, got ${describeValue(value)}`);
      return fallback;
    }
    if (range.above !== undefined && !(value > range.above)) {
      this.problem(key, `must be greater than ${range.above}, got ${value}`);
      return fallback;
    }
    return this.inRange(key, value, range) ? value : fallback;
  }

  /** A probability: a number in [0, 1]. */
  probability(key: string, fallback: number): number {
    return this.number(key, fallback, { min: 0, max: 1 });
  }

  /** A probability or null (absent: null). */
  nullableProbability(key: string): number | null {
    const value = this.raw(key);
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
      this.problem(key, `must be a number in [0, 1] or null, got ${describeValue(value)}`);
      return null;
    }
    return value;
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') {
      this.problem(key, `must be true or false, got ${describeValue(value)}`);
      return fallback;
    }
    return value;
  }

  string(key: string, fallback: string): string {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'string') {
      this.problem(key, `must be a string, got ${describeValue(value)}`);
      return fallback;
    }
    return value;
  }

  nullableString(key: string, fallback: string | null): string | null {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (value !== null && typeof value !== 'string') {
      this.problem(key, `must be a string or null, got ${describeValue(value)}`);
      return fallback;
    }
    return value;
  }

  activation(key: string, fallback: Activation): Activation {
    const value = this.string(key, fallback);
    if (!(ACTIVATIONS as readonly string[]).includes(value)) {
      this.problem(key, `activation ${describeValue(value)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
      return fallback;
    }
    return value as Activation;
  }

  /** A token id: a non-negative integer or null. */
  tokenId(key: string, fallback: number | null): number | null {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (value === null) return null;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.problem(key, `must be a non-negative integer token id or null, got ${describeValue(value)}`);
      return fallback;
    }
    return value;
  }

  /** eos_token_id may be one id or a list of ids. */
  tokenIds(key: string, fallback: number | number[] | null): number | number[] | null {
    const value = this.raw(key);
    if (Array.isArray(value)) {
      if (!value.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id >= 0)) {
        this.problem(key, `must be a token id, a list of token ids, or null, got ${describeValue(value)}`);
        return fallback;
      }
      return [...value] as number[];
    }
    this.used.delete(key);
    return this.tokenId(key, fallback as number | null);
  }

  stringList(key: string, fallback: string[] | null): string[] | null {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (value === null) return null;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
      this.problem(key, `must be a list of strings or null, got ${describeValue(value)}`);
      return fallback;
    }
    return [...value] as string[];
  }

  /** Keys this reader never looked at, in their original order, for round-tripping. */
  extras(): Record<string, unknown> {
    const extra: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this.json)) {
      if (!this.used.has(key)) extra[key] = value;
    }
    return extra;
  }

  /** Throws a ConfigError listing every problem, if any. */
  finish(): void {
    if (this.problems.length > 0) throw new ConfigError(this.source, this.problems);
  }

  private inRange(key: string, value: number, range: { min?: number; max?: number }): boolean {
    if (range.min !== undefined && value < range.min) {
      this.problem(key, `must be at least ${range.min}, got ${value}`);
      return false;
    }
    if (range.max !== undefined && value > range.max) {
      this.problem(key, `must be at most ${range.max}, got ${value}`);
      return false;
    }
    return true;
  }
}

/** Reads and JSON-parses a config file, with the file named in any error. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ key: '(file)', message: `cannot read: ${(error as Error).message}` }]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(file, [{ key: '(file)', message: `not valid JSON: ${(error as Error).message}` }]);
  }
}

/** HF's num_labels: the size of id2label (kept among the extra keys), else num_labels, else 2. */
export function numLabels(extra: Record<string, unknown>): number {
  const id2label = extra.id2label;
  if (typeof id2label === 'object' && id2label !== null && !Array.isArray(id2label)) return Object.keys(id2label).length;
  if (typeof extra.num_labels === 'number') return extra.num_labels;
  return 2;
}

/** What DeBERTa and RoBERTa configs share, read with the same checks and bounds. */
export interface EncoderFields {
  architectures: string[] | null;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: Activation;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  initializer_range: number;
  layer_norm_eps: number;
  tie_word_embeddings: boolean;
  dtype: string | null;
}

export interface EncoderDefaults {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  layer_norm_eps: number;
}

/**
 * Reads the shared encoder fields and checks model_type and the classification-head label
 * count (num_labels / id2label stay among the extras, as HF keeps them, but must be sane).
 */
export function readEncoderFields(r: ConfigReader, defaults: EncoderDefaults): EncoderFields {
  const modelType = r.raw('model_type');
  if (modelType !== undefined && modelType !== defaults.model_type) {
    r.problem('model_type', `expected ${JSON.stringify(defaults.model_type)}, got ${describeValue(modelType)}${modelType === 'deberta' ? ' (DeBERTa V1 is a different model)' : ''}`);
  }
  const hidden_size = r.int('hidden_size', defaults.hidden_size, { min: 1, max: SIZE_LIMITS.hidden_size });
  const num_attention_heads = r.int('num_attention_heads', defaults.num_attention_heads, { min: 1, max: SIZE_LIMITS.num_attention_heads });
  if (hidden_size % num_attention_heads !== 0) {
    r.problem('num_attention_heads', `hidden_size ${hidden_size} is not a multiple of num_attention_heads ${num_attention_heads}`);
  }
  const vocab_size = r.int('vocab_size', defaults.vocab_size, { min: 1, max: SIZE_LIMITS.vocab_size });
  const intermediate_size = r.int('intermediate_size', defaults.intermediate_size, { min: 1, max: SIZE_LIMITS.intermediate_size });
  r.matrix('intermediate_size', hidden_size, intermediate_size, 'each intermediate dense layer');
  const torchDtype = r.nullableString('torch_dtype', null);
  checkLabels(r);
  return {
    architectures: r.stringList('architectures', null),
    vocab_size,
    hidden_size,
    num_hidden_layers: r.int('num_hidden_layers', defaults.num_hidden_layers, { min: 1, max: SIZE_LIMITS.num_hidden_layers }),
    num_attention_heads,
    intermediate_size,
    hidden_act: r.activation('hidden_act', 'gelu'),
    hidden_dropout_prob: r.probability('hidden_dropout_prob', 0.1),
    attention_probs_dropout_prob: r.probability('attention_probs_dropout_prob', 0.1),
    max_position_embeddings: r.int('max_position_embeddings', 512, { min: 1, max: SIZE_LIMITS.max_position_embeddings }),
    initializer_range: r.number('initializer_range', 0.02, { min: 0 }),
    layer_norm_eps: r.number('layer_norm_eps', defaults.layer_norm_eps, { above: 0 }),
    tie_word_embeddings: r.bool('tie_word_embeddings', true),
    dtype: r.nullableString('dtype', torchDtype),
  };
}

function checkLabels(r: ConfigReader): void {
  const count = r.peek('num_labels');
  if (count !== undefined && (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > SIZE_LIMITS.num_labels)) {
    r.problem('num_labels', `must be an integer in [1, ${SIZE_LIMITS.num_labels}], got ${describeValue(count)}`);
  }
  const id2label = r.peek('id2label');
  if (id2label !== undefined && id2label !== null) {
    if (typeof id2label !== 'object' || Array.isArray(id2label)) r.problem('id2label', `must be an object of label id -> name, got ${describeValue(id2label)}`);
    else if (Object.keys(id2label).length > SIZE_LIMITS.num_labels) r.problem('id2label', `lists ${Object.keys(id2label).length} labels, over the limit of ${SIZE_LIMITS.num_labels}`);
  }
}

/**
 * config.json content: every field explicitly (re-validated by `parse`, so a config built or
 * edited in code gets the same checks as one read from disk), then the unknown keys kept from parsing.
 */
export function encoderConfigToJson<C extends { extra: Record<string, unknown> }>(config: C, parse: (json: unknown, source: string) => C, source: string): Record<string, unknown> {
  const { extra, ...fields } = config;
  parse({ ...extra, ...fields }, source);
  const json: Record<string, unknown> = { ...fields };
  for (const [key, value] of Object.entries(extra)) {
    if (!(key in json) && key !== 'torch_dtype') json[key] = value;
  }
  return json;
}
