// Pretraining examples from tokenized documents.
//
// 'electra': NVIDIA's ELECTRA data preparation (which CamemBERTa used). Sentences of one document are
//   accumulated until they reach the target length or the document ends (examples never cross
//   documents). With probability `oneSegmentProb` (0.1) the example has one segment, else the first
//   segment aims at (target - 3) / 2 tokens: a sentence joins it while it stays under that, or, with
//   probability 0.5, when it is the first to go over. Output `[CLS] A [SEP] (B [SEP])`. After each
//   example the next target is, with probability `shortSeqProb` (0.05), randint(5, max), else max.
// 'full-sentences': RoBERTa's packing. Whole consecutive sentences fill `[CLS] ... [SEP]` up to the
//   maximum length; a sentence longer than that is cut into pieces. With `crossDocuments` the packing
//   continues into the next document after a [SEP] (RoBERTa's FULL-SENTENCES), else each document
//   starts a new example (DOC-SENTENCES).
import { Random } from './random';

export type ExampleMode = 'electra' | 'full-sentences';

export interface ExampleConfig {
  mode: ExampleMode;
  maxSeqLength: number;
  /** electra: probability of a random target length for the next example (0.05) */
  shortSeqProb?: number;
  /** electra: probability of a single-segment example (0.1) */
  oneSegmentProb?: number;
  /** full-sentences: pack across documents, with [SEP] between them (false) */
  crossDocuments?: boolean;
}

export interface Example {
  /** [CLS] ... [SEP] (B [SEP]), unpadded */
  tokens: Int32Array;
  /** index of segment B's first token, or tokens.length when there is no segment B */
  segmentBStart: number;
}

export interface ExampleTokens {
  cls: number;
  sep: number;
}

type Sentence = ArrayLike<number> & { length: number };

export interface ExampleBuilder {
  /** Adds one document (its sentences' token ids); returns the examples completed by it. */
  addDocument(sentences: readonly Sentence[]): Example[];
  /** Examples still pending (full-sentences across documents) at the end of the stream. */
  finish(): Example[];
}

export function createExampleBuilder(config: ExampleConfig, tokens: ExampleTokens, random: Random): ExampleBuilder {
  if (!Number.isInteger(config.maxSeqLength) || config.maxSeqLength < 8) {
    throw new Error(`maxSeqLength must be an integer >= 8, got ${config.maxSeqLength}`);
  }
  if (config.mode === 'electra') return new ElectraExampleBuilder(config, tokens, random);
  if (config.mode === 'full-sentences') return new FullSentenceBuilder(config, tokens);
  throw new Error(`unknown example mode ${String((config as { mode: unknown }).mode)} (electra or full-sentences)`);
}

class ElectraExampleBuilder implements ExampleBuilder {
  private readonly maxLength: number;
  private readonly shortSeqProb: number;
  private readonly oneSegmentProb: number;
  private targetLength: number;
  private current: Sentence[] = [];
  private currentLength = 0;

  constructor(config: ExampleConfig, private readonly special: ExampleTokens, private readonly random: Random) {
    this.maxLength = config.maxSeqLength;
    this.targetLength = config.maxSeqLength;
    this.shortSeqProb = config.shortSeqProb ?? 0.05;
    this.oneSegmentProb = config.oneSegmentProb ?? 0.1;
  }

  addDocument(sentences: readonly Sentence[]): Example[] {
    const out: Example[] = [];
    for (const sentence of sentences) {
      this.current.push(sentence);
      this.currentLength += sentence.length;
      if (this.currentLength >= this.targetLength) out.push(this.createExample());
    }
    if (this.currentLength > 0) out.push(this.createExample());
    this.current = [];
    this.currentLength = 0;
    return out;
  }

  finish(): Example[] {
    return [];
  }

  private createExample(): Example {
    const firstTarget = this.random.random() < this.oneSegmentProb ? Number.POSITIVE_INFINITY : Math.floor((this.targetLength - 3) / 2);
    const first: number[] = [];
    const second: number[] = [];
    for (const sentence of this.current) {
      if (first.length === 0 || first.length + sentence.length < firstTarget ||
        (second.length === 0 && first.length < firstTarget && this.random.random() < 0.5)) {
        for (let i = 0; i < sentence.length; i++) first.push(sentence[i]);
      } else {
        for (let i = 0; i < sentence.length; i++) second.push(sentence[i]);
      }
    }
    const firstKept = Math.min(first.length, this.maxLength - 2);
    const secondKept = Math.min(second.length, Math.max(0, this.maxLength - firstKept - 3));
    const length = firstKept + 2 + (secondKept > 0 ? secondKept + 1 : 0);
    const tokens = new Int32Array(length);
    tokens[0] = this.special.cls;
    for (let i = 0; i < firstKept; i++) tokens[1 + i] = first[i];
    tokens[firstKept + 1] = this.special.sep;
    if (secondKept > 0) {
      for (let i = 0; i < secondKept; i++) tokens[firstKept + 2 + i] = second[i];
      tokens[length - 1] = this.special.sep;
    }
    this.current = [];
    this.currentLength = 0;
    this.targetLength = this.random.random() < this.shortSeqProb ? this.random.randint(5, this.maxLength) : this.maxLength;
    return { tokens, segmentBStart: secondKept > 0 ? firstKept + 2 : length };
  }
}

class FullSentenceBuilder implements ExampleBuilder {
  private readonly capacity: number;
  private readonly crossDocuments: boolean;
  private buffer: number[] = [];

  constructor(config: ExampleConfig, private readonly special: ExampleTokens) {
    this.capacity = config.maxSeqLength - 2;
    this.crossDocuments = config.crossDocuments ?? false;
  }

  addDocument(sentences: readonly Sentence[]): Example[] {
    const out: Example[] = [];
    if (this.crossDocuments && this.buffer.length > 0) {
      if (this.buffer.length + 1 > this.capacity) out.push(this.emit());
      else this.buffer.push(this.special.sep);
    }
    for (const sentence of sentences) {
      if (this.buffer.length > 0 && this.buffer.length + sentence.length > this.capacity) out.push(this.emit());
      for (let start = 0; start < sentence.length; start += this.capacity) {
        const end = Math.min(sentence.length, start + this.capacity);
        for (let i = start; i < end; i++) this.buffer.push(sentence[i]);
        if (this.buffer.length >= this.capacity) out.push(this.emit());
      }
    }
    if (!this.crossDocuments && this.buffer.length > 0) out.push(this.emit());
    return out;
  }

  finish(): Example[] {
    return this.buffer.length > 0 ? [this.emit()] : [];
  }

  private emit(): Example {
    // A document separator that ended up last would give "[SEP] [SEP]".
    while (this.buffer.length && this.buffer[this.buffer.length - 1] === this.special.sep) this.buffer.pop();
    const tokens = new Int32Array(this.buffer.length + 2);
    tokens[0] = this.special.cls;
    tokens.set(this.buffer, 1);
    tokens[tokens.length - 1] = this.special.sep;
    this.buffer = [];
    return { tokens, segmentBStart: tokens.length };
  }
}
