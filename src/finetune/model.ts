// Model directories for fine-tuning: an HF-format DeBERTa-V2/V3 or RoBERTa directory (ours or one
// saved by transformers) with a SentencePiece tokenizer beside it, turned into a task model whose
// encoder holds the directory's weights and whose head is fresh (or, for prediction, the head saved
// with it), and saved back as a directory transformers loads.
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, Generator, dispose, tidy } from '../tensor';
import { PreTrainedModule, ModelConfig } from '../models/pretrained-module';
import { DebertaV2Config } from '../models/deberta/config';
import { RobertaConfig } from '../models/roberta/config';
import { DebertaV2Model, DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification } from '../models/deberta/modeling';
import { RobertaModel } from '../models/roberta/modeling';
import { MODEL_TYPES } from '../models/registry';
import { readConfig, readCheckpoint, savePretrained } from '../io/pretrained';
import { loadTokenizer, LoadedTokenizer } from '../tokenizer/index';
import { RobertaForSequenceClassification, RobertaForTokenClassification } from './roberta-heads';
import { DataError } from './conllu';
import type { SpecialLayout } from './encoding';

/** The SentencePiece file names a model directory may hold: ours and DeBERTa-V3's, CamemBERT's, others'. */
export const TOKENIZER_FILES = ['spm.model', 'sentencepiece.bpe.model', 'tokenizer.model'];

export interface ModelDirectory {
  dir: string;
  config: ModelConfig;
  tokenizer: LoadedTokenizer;
  tokenizerFile: string;
}

/** Reads config.json and the tokenizer of a model directory; errors name the directory and what is missing. */
export async function openModelDirectory(dir: string): Promise<ModelDirectory> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new DataError(dir, null, 'no such model directory');
  let config: ModelConfig;
  try {
    config = readConfig(dir);
  } catch (error) {
    throw new DataError(dir, null, (error as Error).message.replace(`${dir}: `, ''));
  }
  const tokenizerFile = TOKENIZER_FILES.map((name) => path.join(dir, name)).find((file) => fs.existsSync(file));
  if (!tokenizerFile) {
    const hasJsonOnly = fs.existsSync(path.join(dir, 'tokenizer.json'));
    throw new DataError(dir, null, `no tokenizer: expected a SentencePiece model (${TOKENIZER_FILES.join(', ')})${hasJsonOnly ? '; tokenizer.json alone (a BPE or WordPiece tokenizer) is not supported' : ''}`);
  }
  let tokenizer: LoadedTokenizer;
  try {
    tokenizer = await loadTokenizer(tokenizerFile, { modelConfig: config as unknown as Record<string, unknown> });
  } catch (error) {
    throw new DataError(tokenizerFile, null, (error as Error).message);
  }
  return { dir, config, tokenizer, tokenizerFile };
}

export function layoutOf(config: ModelConfig): SpecialLayout {
  return config.model_type === 'roberta' ? 'roberta' : 'deberta';
}

export type HeadKind = 'token-classification' | 'sequence-classification' | 'encoder';

/** The task of a saved head model, by its config.json architecture. */
export const MODEL_TYPES_TASK: Record<string, 'token-classification' | 'sequence-classification'> = {
  DebertaV2ForTokenClassification: 'token-classification',
  RobertaForTokenClassification: 'token-classification',
  DebertaV2ForSequenceClassification: 'sequence-classification',
  RobertaForSequenceClassification: 'sequence-classification',
};

/** config.json key of what predict.js needs to read inputs as training did (transformers keeps unknown keys). */
export const TASK_META_KEY = 'camemberta_finetune';

export interface TaskMeta {
  task: string;
  /** Token classification: the column the labels came from (and predictions go to). */
  label_column?: string;
  max_length: number;
}

/** The config with the label names written as transformers writes them (id2label / label2id), and the task's settings. */
export function withLabels<C extends ModelConfig>(config: C, labels: readonly string[] | null, meta?: TaskMeta): C {
  const extra = { ...config.extra };
  delete extra.num_labels;
  delete extra.id2label;
  delete extra.label2id;
  delete extra[TASK_META_KEY];
  if (meta) extra[TASK_META_KEY] = meta;
  if (labels) {
    extra.id2label = Object.fromEntries(labels.map((label, i) => [String(i), label]));
    extra.label2id = Object.fromEntries(labels.map((label, i) => [label, i]));
  }
  return { ...config, extra, architectures: null };
}

/** The label names of a saved classification model (id2label, in id order). */
export function taskMetaOf(config: ModelConfig): Partial<TaskMeta> {
  const meta = config.extra[TASK_META_KEY];
  return meta && typeof meta === 'object' && !Array.isArray(meta) ? meta as Partial<TaskMeta> : {};
}

export function labelsOf(config: ModelConfig, source: string): string[] {
  const id2label = config.extra.id2label;
  if (!id2label || typeof id2label !== 'object') throw new DataError(source, null, 'config.json has no id2label: not a classification model saved with its labels');
  const entries = Object.entries(id2label as Record<string, unknown>).map(([id, name]) => [Number(id), String(name)] as const).sort((a, b) => a[0] - b[0]);
  entries.forEach(([id], i) => { if (id !== i) throw new DataError(source, null, `id2label ids must be 0..${entries.length - 1}`); });
  return entries.map(([, name]) => name);
}

export type EncoderModel = DebertaV2Model | RobertaModel;
export type TaskModel = PreTrainedModule & { forward(inputs: { inputIds: Tensor<'int64'>; attentionMask?: Tensor; tokenTypeIds?: Tensor<'int64'> }): { lastHiddenState: Tensor; logits?: Tensor } };

export function createTaskModel(kind: HeadKind, config: ModelConfig, labels: readonly string[] | null, generator?: Generator, meta?: TaskMeta): TaskModel {
  const options = { generator, init: 'normal' as const };
  const c = withLabels(config, labels, meta);
  if (c.model_type === 'deberta-v2') {
    const d = c as DebertaV2Config;
    if (kind === 'token-classification') return new DebertaV2ForTokenClassification(d, options) as TaskModel;
    if (kind === 'sequence-classification') return new DebertaV2ForSequenceClassification(d, options) as TaskModel;
    return new DebertaV2Model(d, options) as TaskModel;
  }
  const r = c as RobertaConfig;
  if (kind === 'token-classification') return new RobertaForTokenClassification(r, options) as TaskModel;
  if (kind === 'sequence-classification') return new RobertaForSequenceClassification(r, options) as TaskModel;
  return new RobertaModel(r, { ...options, addPoolingLayer: false }) as TaskModel;
}

/** The encoder inside a task model (the model itself for a bare encoder). */
export function encoderOf(model: TaskModel): EncoderModel {
  const inner = (model as unknown as Record<string, unknown>)[model.baseModelPrefix];
  return (inner instanceof DebertaV2Model || inner instanceof RobertaModel ? inner : model) as EncoderModel;
}

export interface WeightReport {
  /** Checkpoint keys not used (another head's, position_ids buffers...). */
  ignored: string[];
  /** Parameters the checkpoint did not have, left at their fresh initialisation (the new head). */
  fresh: string[];
}

/**
 * Copies the directory's weights into the model. 'encoder': only the encoder's (a fresh head for
 * fine-tuning, whatever head the checkpoint had); every encoder parameter must be there. 'all':
 * every parameter must be there (prediction with a saved fine-tuned model).
 */
export function loadWeights(model: TaskModel, dir: string, what: 'encoder' | 'all'): WeightReport {
  const { tensors, file } = readCheckpoint(dir);
  try {
    return tidy(() => {
      const prefix = `${model.baseModelPrefix}.`;
      const modelKeys = new Set(model.stateDict().keys());
      const modelHasPrefix = [...modelKeys].some((key) => key.startsWith(prefix));
      const checkpointHasPrefix = [...tensors.keys()].some((key) => key.startsWith(prefix));
      const ignorable = MODEL_TYPES[model.config.model_type].ignoredUnexpected;
      const dict = new Map<string, Tensor>();
      const ignored: string[] = [];
      for (const [key, t] of tensors) {
        // Bring the key to the model's naming: a base checkpoint under a head model gains the prefix,
        // a head checkpoint under a bare encoder loses it (and its head keys are not the encoder's).
        let target = key;
        if (modelHasPrefix && !checkpointHasPrefix) target = modelKeys.has(prefix + key) ? prefix + key : key;
        else if (!modelHasPrefix && checkpointHasPrefix) target = key.startsWith(prefix) ? key.slice(prefix.length) : `\u0000${key}`;
        const isEncoderKey = !modelHasPrefix || target.startsWith(prefix);
        if (!modelKeys.has(target) || (what === 'encoder' && !isEncoderKey)) {
          ignored.push(key);
          continue;
        }
        dict.set(target, t);
      }
      const result = model.loadStateDict(dict, { strict: false });
      const isEncoderKey = (key: string) => !modelHasPrefix || key.startsWith(prefix);
      const missingEncoder = result.missing.filter(isEncoderKey);
      const problems: string[] = [];
      if (what === 'all' && result.missing.length) problems.push(`missing ${result.missing.join(', ')}`);
      else if (missingEncoder.length) problems.push(`missing encoder weights ${missingEncoder.join(', ')}`);
      for (const m of result.mismatched) problems.push(`${m.key} has shape [${m.got.join(', ')}], the model [${m.expected.join(', ')}]`);
      if (problems.length) throw new DataError(file, null, `does not fit ${model.architecture}: ${problems.join('; ')}`);
      const unexplained = ignored.filter((key) => what === 'all' && !ignorable.some((pattern) => pattern.test(key)));
      if (unexplained.length) throw new DataError(file, null, `keys ${unexplained.join(', ')} are not parameters of ${model.architecture}`);
      return { ignored, fresh: result.missing };
    });
  } finally {
    dispose([...tensors.values()]);
  }
}

/** Saves the model (config.json with its labels, model.safetensors) and the tokenizer files AutoTokenizer reads. */
export function saveTaskModel(model: TaskModel, dir: string, tokenizer: LoadedTokenizer): void {
  savePretrained(model, dir);
  tokenizer.saveForTransformers(dir, model.config.max_position_embeddings);
}
