// The three fine-tuning tasks over one interface the trainer drives: examples read and encoded from
// files, a training loss on a batch, predictions on a batch, scores of a split, and how the trained
// model is saved. Labels are the training file's; a dev/test label train never had is kept as a
// string (never predicted, so it counts as an error) and reported once as a warning.
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, Generator, DType, tensor, crossEntropy, keep, dispose, noGrad, tidy } from '../tensor';
import { Module, Parameter } from '../nn';
import { savePretrained, toSafetensorsEntry } from '../io/pretrained';
import { writeSafetensors } from '../io/safetensors';
import { readCorpus, columnIndex, wordLabels, wordArcs, Corpus, CorpusFormat, DataError } from './conllu';
import { readTextExamples, TextFormat, TextExample } from './text-data';
import { encodeWords, encodeText, collate, wordMatrix, EncodedWords, EncodedRow, ModelBatch } from './encoding';
import { ModelDirectory, TaskModel, createTaskModel, encoderOf, layoutOf, saveTaskModel } from './model';
import { BiaffineParserHead, decodeTree } from './biaffine';
import type { LoadedTokenizer } from '../tokenizer/index';
import { classificationScores, entityScores, isEntityTagSet, attachmentScores } from './metrics';
import { FinetuneConfig, Task } from './config';

/** A label the model cannot output: what a truncated word or an unpredictable example scores as. */
export const NO_PREDICTION = '\u0000none';

export interface Scores {
  /** The number the best epoch is chosen by: accuracy, or LAS for parsing. */
  main: number;
  [key: string]: unknown;
}

export interface TaskExample {
  /** Sub-word length of the row: batches for evaluation are grouped by it. */
  length: number;
}

export interface FinetuneTask<E extends TaskExample = TaskExample, P = unknown> {
  readonly task: Task;
  readonly mainMetric: string;
  /** Every module that trains: the task model, and a separate head (the parser) when there is one. */
  readonly model: TaskModel;
  readonly head: Module | null;
  /**
   * What the loss averages over in `batch`, counted on the host: labelled words, examples, or arcs
   * and relations. Several ranks count them over the whole global batch, so that each divides its
   * slice's summed loss by the global counts and the summed gradients are one process's.
   */
  lossCounts(batch: readonly E[]): number[];
  /** The summed loss of `batch` divided by `counts` (default: the batch's own lossCounts, its mean). */
  loss(batch: readonly E[], device: string, counts?: readonly number[]): Tensor;
  predict(batch: readonly E[], device: string): P[];
  score(examples: readonly E[], predictions: readonly P[]): Scores;
  /** Writes the trained model (with its tokenizer files) into dir. */
  save(dir: string): void;
  dispose(): void;
}

export interface TaskData<E> {
  train: E[];
  dev: E[];
  test: E[] | null;
}

function warnUnknown(file: string, unknown: Map<string, number>, what: string, warn: (line: string) => void): void {
  if (unknown.size === 0) return;
  const total = [...unknown.values()].reduce((a, b) => a + b, 0);
  const listed = [...unknown.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([label, n]) => `${label} (${n})`).join(', ');
  warn(`warning: ${file}: ${total} ${what} with labels the training file never had: ${listed}${unknown.size > 10 ? ', ...' : ''}; they count as errors in the scores`);
}

function corpusFormat(config: FinetuneConfig): CorpusFormat | undefined {
  if (config.format === 'conllu' || config.format === 'conll2003') return config.format;
  if (config.format === 'auto') return undefined;
  throw new DataError('--format', null, `${config.format} is a text-classification format; token classification and parsing read conllu or conll2003`);
}

function textFormat(config: FinetuneConfig): TextFormat | undefined {
  if (config.format === 'jsonl' || config.format === 'tsv') return config.format;
  if (config.format === 'auto') return undefined;
  throw new DataError('--format', null, `${config.format} is a word-level format; sequence classification reads jsonl or tsv`);
}

function warnTruncated(file: string, rows: { truncatedWords: number }[], maxLength: number, warn: (line: string) => void): void {
  const sentences = rows.filter((row) => row.truncatedWords > 0).length;
  if (sentences === 0) return;
  const words = rows.reduce((n, row) => n + row.truncatedWords, 0);
  warn(`warning: ${file}: ${sentences} sentence(s) longer than max_length ${maxLength} sub-words: ${words} word(s) past it get no prediction and count as errors`);
}

/** The model's input tensors of a batch of rows. */
function inputsOf(model: TaskModel, rows: readonly EncodedRow[], padId: number, device: string): ModelBatch {
  return collate(rows, padId, device, model.config.type_vocab_size > 1);
}

/** A sum over `count` items as their mean; a batch with none (every word unlabelled) adds 0, not NaN. */
function meanOver(sum: Tensor, count: number): Tensor {
  return sum.div(Math.max(count, 1));
}

/** Arg-max class of each row of a [N, C] float tensor, as host numbers. */
function argmaxRows(logits: Tensor): Int32Array {
  return Int32Array.from(logits.argmax(-1).cpu().toTypedArray() as BigInt64Array, Number);
}

// ---- token classification -------------------------------------------------------------------------

export interface WordsExample extends TaskExample {
  encoded: EncodedWords;
  gold: string[];
  /** Label ids (-100: unknown to the model, or no prediction possible). */
  labelIds: number[];
}

export class TokenClassificationTask implements FinetuneTask<WordsExample, string[]> {
  readonly task = 'token-classification' as const;
  readonly mainMetric = 'accuracy';
  readonly head = null;
  readonly entityTags: boolean;

  private readonly padId: number;

  constructor(readonly model: TaskModel, readonly labels: string[], private readonly tokenizer: LoadedTokenizer) {
    this.padId = tokenizer.special.ids.pad;
    this.entityTags = isEntityTagSet(labels);
  }

  /** Words trained on: a first sub-word within max_length and a label the model has. */
  private static trained(e: WordsExample, w: number): boolean {
    return e.encoded.firstPiece[w] >= 0 && e.labelIds[w] >= 0;
  }

  lossCounts(batch: readonly WordsExample[]): number[] {
    let words = 0;
    for (const e of batch) for (let w = 0; w < e.labelIds.length; w++) if (TokenClassificationTask.trained(e, w)) words++;
    return [words];
  }

  loss(batch: readonly WordsExample[], device: string, counts = this.lossCounts(batch)): Tensor {
    const inputs = inputsOf(this.model, batch.map((e) => e.encoded), this.padId, device);
    const [B, L] = inputs.inputIds.shape;
    const targets = new BigInt64Array(B * L).fill(-100n);
    batch.forEach((e, b) => e.encoded.firstPiece.forEach((position, w) => {
      if (TokenClassificationTask.trained(e, w)) targets[b * L + position] = BigInt(e.labelIds[w]);
    }));
    const logits = this.model.forward(inputs).logits!;
    const labels = tensor(targets, { shape: [B * L], device }) as Tensor<'int64'>;
    return meanOver(crossEntropy(logits.reshape(B * L, -1), labels, { reduction: 'sum' }), counts[0]);
  }

  predict(batch: readonly WordsExample[], device: string): string[][] {
    return noGrad(() => tidy(() => {
      const inputs = inputsOf(this.model, batch.map((e) => e.encoded), this.padId, device);
      const [B, L] = inputs.inputIds.shape;
      const best = argmaxRows(this.model.forward(inputs).logits!.reshape(B * L, -1));
      return batch.map((e, b) => e.encoded.firstPiece.map((position) => (position < 0 ? NO_PREDICTION : this.labels[best[b * L + position]])));
    }));
  }

  score(examples: readonly WordsExample[], predictions: readonly string[][]): Scores {
    const scores = classificationScores(examples.flatMap((e) => e.gold), predictions.flat());
    const { per_label, ...rest } = scores;
    delete per_label[NO_PREDICTION];
    const result: Scores = { main: scores.accuracy, ...rest, per_label };
    if (this.entityTags) result.entity = entityScores(examples.map((e) => e.gold), predictions);
    return result;
  }

  save(dir: string): void {
    saveTaskModel(this.model, dir, this.tokenizer);
  }


  dispose(): void {
    this.model.dispose();
  }
}

export function readWordsExamples(file: string, config: FinetuneConfig, directory: ModelDirectory, labelIndex: Map<string, number> | null, warn: (line: string) => void): { corpus: Corpus; examples: WordsExample[]; labelValues: string[][] } {
  const corpus = readCorpus(file, corpusFormat(config));
  const column = columnIndex(corpus, config.label_column);
  const labelValues = wordLabels(corpus, column);
  const unknown = new Map<string, number>();
  const truncation: { truncatedWords: number }[] = [];
  const examples = corpus.sentences.map((sentence, s) => {
    const encoded = encodeWords(directory.tokenizer, sentence.words.map((w) => w.form), config.max_length);
    truncation.push({ truncatedWords: encoded.firstPiece.filter((p) => p < 0).length });
    const gold = labelValues[s];
    const labelIds = gold.map((label) => {
      if (!labelIndex) return 0;
      const id = labelIndex.get(label);
      if (id === undefined) unknown.set(label, (unknown.get(label) ?? 0) + 1);
      return id ?? -100;
    });
    return { encoded, gold, labelIds, length: encoded.ids.length };
  });
  warnUnknown(file, unknown, 'words', warn);
  warnTruncated(file, truncation, config.max_length, warn);
  return { corpus, examples, labelValues };
}

function labelVocabulary(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

export function buildTokenClassification(config: FinetuneConfig, directory: ModelDirectory, generator: Generator, warn: (line: string) => void): { task: TokenClassificationTask; data: TaskData<WordsExample> } {
  const train = readWordsExamples(config.train, config, directory, null, warn);
  const labels = labelVocabulary(train.labelValues.flat());
  const index = new Map(labels.map((label, i) => [label, i]));
  const relabel = (e: WordsExample) => ({ ...e, labelIds: e.gold.map((label) => index.get(label) ?? -100) });
  const dev = readWordsExamples(config.dev, config, directory, index, warn).examples;
  const test = config.test ? readWordsExamples(config.test, config, directory, index, warn).examples : null;
  const model = createTaskModel('token-classification', directory.config, labels, generator, { task: config.task, label_column: config.label_column, max_length: config.max_length });
  const task = new TokenClassificationTask(model, labels, directory.tokenizer);
  return { task, data: { train: train.examples.map(relabel), dev, test } };
}

// ---- sequence classification ----------------------------------------------------------------------

export interface TextTaskExample extends TaskExample {
  encoded: EncodedRow;
  gold: string;
  labelId: number;
  source: TextExample;
}

export class SequenceClassificationTask implements FinetuneTask<TextTaskExample, string> {
  readonly task = 'sequence-classification' as const;
  readonly mainMetric = 'accuracy';
  readonly head = null;

  private readonly padId: number;

  constructor(readonly model: TaskModel, readonly labels: string[], private readonly tokenizer: LoadedTokenizer) {
    this.padId = tokenizer.special.ids.pad;
  }

  lossCounts(batch: readonly TextTaskExample[]): number[] {
    return [batch.filter((e) => e.labelId >= 0).length];
  }

  loss(batch: readonly TextTaskExample[], device: string, counts = this.lossCounts(batch)): Tensor {
    const inputs = inputsOf(this.model, batch.map((e) => e.encoded), this.padId, device);
    const logits = this.model.forward(inputs).logits!;
    const labels = tensor(BigInt64Array.from(batch.map((e) => BigInt(e.labelId))), { device }) as Tensor<'int64'>;
    return meanOver(crossEntropy(logits, labels, { reduction: 'sum' }), counts[0]);
  }

  predict(batch: readonly TextTaskExample[], device: string): string[] {
    return noGrad(() => tidy(() => {
      const inputs = inputsOf(this.model, batch.map((e) => e.encoded), this.padId, device);
      const best = argmaxRows(this.model.forward(inputs).logits!);
      return batch.map((_, b) => this.labels[best[b]]);
    }));
  }

  score(examples: readonly TextTaskExample[], predictions: readonly string[]): Scores {
    const scores = classificationScores(examples.map((e) => e.gold), predictions);
    return { main: scores.accuracy, ...scores };
  }

  save(dir: string): void {
    saveTaskModel(this.model, dir, this.tokenizer);
  }

  dispose(): void {
    this.model.dispose();
  }
}

export function readTextTaskExamples(file: string, config: FinetuneConfig, directory: ModelDirectory, labelIndex: Map<string, number> | null, warn: (line: string) => void, requireLabels = true): TextTaskExample[] {
  const fields = { text: config.text_field, textPair: config.text_pair_field, label: config.label_field };
  const records = readTextExamples(file, { fields, format: textFormat(config), requireLabels });
  const unknown = new Map<string, number>();
  let truncated = 0;
  const layout = layoutOf(directory.config);
  const examples = records.map((record) => {
    const encoded = encodeText(directory.tokenizer, record.text, record.textPair, config.max_length, layout);
    if (encoded.truncated) truncated++;
    const gold = record.label ?? NO_PREDICTION;
    let labelId = 0;
    if (labelIndex && record.label !== undefined) {
      const id = labelIndex.get(record.label);
      if (id === undefined) unknown.set(record.label, (unknown.get(record.label) ?? 0) + 1);
      labelId = id ?? -100;
    }
    return { encoded, gold, labelId, source: record, length: encoded.ids.length };
  });
  warnUnknown(file, unknown, 'examples', warn);
  if (truncated) warn(`warning: ${file}: ${truncated} example(s) cut to max_length ${config.max_length} sub-words`);
  return examples;
}

export function buildSequenceClassification(config: FinetuneConfig, directory: ModelDirectory, generator: Generator, warn: (line: string) => void): { task: SequenceClassificationTask; data: TaskData<TextTaskExample> } {
  const trainRaw = readTextTaskExamples(config.train, config, directory, null, warn);
  const labels = labelVocabulary(trainRaw.map((e) => e.gold));
  if (labels.length < 2) throw new DataError(config.train, null, `sequence classification needs at least two labels, the file has ${labels.length} (${labels.join(', ')})`);
  const index = new Map(labels.map((label, i) => [label, i]));
  const train = trainRaw.map((e) => ({ ...e, labelId: index.get(e.gold)! }));
  const dev = readTextTaskExamples(config.dev, config, directory, index, warn);
  const test = config.test ? readTextTaskExamples(config.test, config, directory, index, warn) : null;
  const model = createTaskModel('sequence-classification', directory.config, labels, generator, { task: config.task, max_length: config.max_length });
  const task = new SequenceClassificationTask(model, labels, directory.tokenizer);
  return { task, data: { train, dev, test } };
}

// ---- dependency parsing ---------------------------------------------------------------------------

export const PARSER_HEAD_WEIGHTS = 'parser_head.safetensors';
export const PARSER_HEAD_CONFIG = 'parser_head.json';

export interface ParseExample extends TaskExample {
  encoded: EncodedWords;
  heads: number[];
  relations: string[];
  relationIds: number[];
}

export interface Parse {
  heads: number[];
  relations: string[];
}

export interface ParserHeadConfig {
  format: 'camemberta-biaffine-parser';
  version: 1;
  relations: string[];
  arc_size: number;
  rel_size: number;
  mlp_dropout: number;
  /** Sub-words per row the parser was trained with. */
  max_length: number;
}

export class DependencyParsingTask implements FinetuneTask<ParseExample, Parse> {
  readonly task = 'dependency-parsing' as const;
  readonly mainMetric = 'las';

  private readonly padId: number;

  constructor(readonly model: TaskModel, readonly head: BiaffineParserHead, readonly relations: string[], private readonly tokenizer: LoadedTokenizer, readonly maxLength: number) {
    this.padId = tokenizer.special.ids.pad;
  }

  private run(batch: readonly ParseExample[], device: string) {
    const inputs = inputsOf(this.model, batch.map((e) => e.encoded), this.padId, device);
    const hidden = encoderOf(this.model).forward(inputs).lastHiddenState;
    const [B, , H] = hidden.shape;
    // Words cut off by max_length read position 0 and are masked out.
    const positions = wordMatrix(batch.map((e) => e.encoded.firstPiece.map((p) => Math.max(p, 0))), 0, device);
    const wordMask = wordMatrix(batch.map((e) => e.encoded.firstPiece.map((p) => (p >= 0 ? 1 : 0))), 0, device);
    const W = positions.size(1);
    const words = hidden.gather(1, positions.unsqueeze(-1).expand(B, W, H));
    const root = hidden.select(1, 0);
    return { ...this.head.forward(words, root, wordMask), W };
  }

  /** The gold heads and relation ids trained on; -100 where the word or its head is cut off by max_length, or the relation is unknown. */
  private static gold(e: ParseExample): { heads: number[]; relations: number[] } {
    const cut = (w: number) => e.encoded.firstPiece[w] < 0 || (e.heads[w] > 0 && e.encoded.firstPiece[e.heads[w] - 1] < 0);
    return {
      heads: e.heads.map((h, w) => (cut(w) ? -100 : h)),
      relations: e.relationIds.map((r, w) => (cut(w) || r < 0 ? -100 : r)),
    };
  }

  lossCounts(batch: readonly ParseExample[]): number[] {
    let arcs = 0;
    let relations = 0;
    for (const e of batch) {
      const gold = DependencyParsingTask.gold(e);
      arcs += gold.heads.filter((h) => h !== -100).length;
      relations += gold.relations.filter((r) => r !== -100).length;
    }
    return [arcs, relations];
  }

  loss(batch: readonly ParseExample[], device: string, counts = this.lossCounts(batch)): Tensor {
    const { arcScores, relDep, relHead } = this.run(batch, device);
    const gold = batch.map((e) => DependencyParsingTask.gold(e));
    const goldHeads = wordMatrix(gold.map((g) => g.heads), -100, device);
    const goldRelations = wordMatrix(gold.map((g) => g.relations), -100, device);
    const { arcs, relations } = this.head.loss(arcScores, relDep, relHead, goldHeads, goldRelations, 'sum');
    return meanOver(arcs, counts[0]).add(meanOver(relations, counts[1]));
  }

  predict(batch: readonly ParseExample[], device: string): Parse[] {
    return noGrad(() => tidy(() => {
      const { arcScores, relDep, relHead, W } = this.run(batch, device);
      const logProbs = arcScores.float().logSoftmax(-1).cpu().contiguous();
      const values = logProbs.toTypedArray() as Float32Array;
      const heads = batch.map((e, b) => {
        const n = e.encoded.firstPiece.filter((p) => p >= 0).length;
        const rows = Array.from({ length: n }, (_, i) => values.subarray((b * W + i) * (W + 1), (b * W + i) * (W + 1) + n + 1));
        return decodeTree(rows, n);
      });
      const headTensor = wordMatrix(heads, 0, device);
      const relationScores = this.head.relationScores(relDep, relHead, headTensor);
      const R = this.relations.length;
      const best = argmaxRows(relationScores.reshape(-1, R));
      return batch.map((e, b) => {
        const total = e.encoded.firstPiece.length;
        const parse: Parse = { heads: [], relations: [] };
        for (let w = 0; w < total; w++) {
          if (w < heads[b].length) {
            parse.heads.push(heads[b][w]);
            parse.relations.push(this.relations[best[b * W + w]]);
          } else {
            parse.heads.push(-1);
            parse.relations.push(NO_PREDICTION);
          }
        }
        return parse;
      });
    }));
  }

  score(examples: readonly ParseExample[], predictions: readonly Parse[]): Scores {
    const scores = attachmentScores(examples.map((e) => ({ heads: e.heads, relations: e.relations })), predictions);
    return { main: scores.las, ...scores };
  }

  save(dir: string): void {
    const encoder = encoderOf(this.model);
    savePretrained(encoder, dir);
    this.tokenizer.saveForTransformers(dir, encoder.config.max_position_embeddings);
    tidy(() => {
      const entries = new Map(this.head.namedParameters().map(([key, p]) => [key, toSafetensorsEntry(p.detach().cpu(), key)] as const));
      writeSafetensors(path.join(dir, PARSER_HEAD_WEIGHTS), entries, { format: 'pt' });
    });
    const { arcSize, relSize, mlpDropout } = this.head.options;
    const json: ParserHeadConfig = { format: 'camemberta-biaffine-parser', version: 1, relations: this.relations, arc_size: arcSize, rel_size: relSize, mlp_dropout: mlpDropout, max_length: this.maxLength };
    fs.writeFileSync(path.join(dir, PARSER_HEAD_CONFIG), `${JSON.stringify(json, null, 2)}\n`);
  }

  dispose(): void {
    this.model.dispose();
    this.head.dispose();
  }
}

export function readParseExamples(file: string, config: FinetuneConfig, directory: ModelDirectory, relationIndex: Map<string, number> | null, warn: (line: string) => void): { corpus: Corpus; examples: ParseExample[] } {
  const corpus = readCorpus(file, corpusFormat(config) ?? 'conllu');
  const arcs = wordArcs(corpus);
  const unknown = new Map<string, number>();
  const truncation: { truncatedWords: number }[] = [];
  const examples = corpus.sentences.map((sentence, s) => {
    const encoded = encodeWords(directory.tokenizer, sentence.words.map((w) => w.form), config.max_length);
    truncation.push({ truncatedWords: encoded.firstPiece.filter((p) => p < 0).length });
    const relationIds = arcs[s].relations.map((relation) => {
      if (!relationIndex) return 0;
      const id = relationIndex.get(relation);
      if (id === undefined) unknown.set(relation, (unknown.get(relation) ?? 0) + 1);
      return id ?? -100;
    });
    return { encoded, heads: arcs[s].heads, relations: arcs[s].relations, relationIds, length: encoded.ids.length };
  });
  warnUnknown(file, unknown, 'words', warn);
  warnTruncated(file, truncation, config.max_length, warn);
  return { corpus, examples };
}

export function buildDependencyParsing(config: FinetuneConfig, directory: ModelDirectory, generator: Generator, warn: (line: string) => void): { task: DependencyParsingTask; data: TaskData<ParseExample> } {
  const trainRaw = readParseExamples(config.train, config, directory, null, warn).examples;
  const relations = labelVocabulary(trainRaw.flatMap((e) => e.relations));
  const index = new Map(relations.map((r, i) => [r, i]));
  const train = trainRaw.map((e) => ({ ...e, relationIds: e.relations.map((r) => index.get(r)!) }));
  const dev = readParseExamples(config.dev, config, directory, index, warn).examples;
  const test = config.test ? readParseExamples(config.test, config, directory, index, warn).examples : null;
  const model = createTaskModel('encoder', directory.config, null, generator);
  const head = new BiaffineParserHead({
    hiddenSize: directory.config.hidden_size, relations: relations.length,
    arcSize: config.parser.arc_size, relSize: config.parser.rel_size, mlpDropout: config.parser.mlp_dropout,
  }, { generator });
  const task = new DependencyParsingTask(model, head, relations, directory.tokenizer, config.max_length);
  return { task, data: { train, dev, test } };
}

/** Parameter snapshots (the best epoch's weights), kept on the parameters' device. */
export class WeightSnapshot {
  private saved: Map<Parameter<DType>, Tensor> = new Map();

  take(modules: readonly Module[]): void {
    this.clear();
    noGrad(() => {
      for (const module of modules) for (const p of module.parameters()) this.saved.set(p, keep(p.detach().clone()));
    });
  }

  restore(): void {
    noGrad(() => { for (const [p, t] of this.saved) p.copy_(t); });
  }

  get empty(): boolean {
    return this.saved.size === 0;
  }

  clear(): void {
    dispose([...this.saved.values()]);
    this.saved = new Map();
  }
}
