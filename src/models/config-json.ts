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

/** HF's num_labels: the size of id2label (kept among the extra keys), 2 when absent. */
export function numLabels(extra: Record<string, unknown>): number {
  const id2label = extra.id2label;
  if (typeof id2label === 'object' && id2label !== null && !Array.isArray(id2label)) return Object.keys(id2label).length;
  if (typeof extra.num_labels === 'number') return extra.num_labels;
  return 2;
}
