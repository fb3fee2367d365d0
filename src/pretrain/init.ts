// Continued pretraining from HuggingFace model directories (config `init`, --init-discriminator /
// --init-generator). The architecture comes from the directories' config.json, so the training
// config's model sizes are ignored. Everything is read and checked before the run writes anything:
// config.json of each directory, the weights (safetensors, pytorch_model.bin, sharded), the model's
// tokenizer against the data's, and every tensor's shape. The result is a model ready to train and
// a report of every key: loaded, initialised fresh, ignored, or resized.
//
// ELECTRA: the discriminator's base weights come from init.discriminator (heads of a masked-LM or
// token-classification directory are ignored; an RTD head is read from rtd_head.safetensors or
// `discriminator_predictions.*` keys, else initialised fresh); the generator from init.generator
// (a DebertaV2ForMaskedLM directory), else fresh at model.generator's ratios with the
// discriminator's word embeddings. Under GDES the generator's table becomes the shared table and
// the delta starts as (discriminator's table - generator's), so the starting discriminator is the
// released one. A data tokenizer that extends the model's (same ids, pieces appended) grows the
// vocabulary rows, each new row the mean of the rows of the pieces the old tokenizer made of it.
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, Generator, DType, tensor, dispose, noGrad } from '../tensor';
import { Module, Parameter } from '../nn';
import {
  readCheckpoint, fromSafetensorsEntry, CONFIG_NAME, SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME,
} from '../io/pretrained';
import { iterateSafetensors, writeFileAtomicSyncFrom } from '../io';
import { ARCHITECTURES, MODEL_TYPES, parseModelConfig } from '../models/registry';
import { ConfigError, readJsonFile } from '../models/config-json';
import type { ModelConfig, PreTrainedModule } from '../models/pretrained-module';
import { DebertaV2Config, parseDebertaConfig } from '../models/deberta/config';
import { DebertaV2ForMaskedLM } from '../models/deberta/modeling';
import { RobertaConfig } from '../models/roberta/config';
import { RobertaForMaskedLM } from '../models/roberta/modeling';
import { generatorFromDiscriminator } from '../models/presets';
import { readSentencePieceModel, SentencePieceModel } from '../tokenizer/spm-model';
import { readHfTokenizerFiles, resolveSpecialTokens, checkAgainstModelConfig, SpecialTokens, SpecialTokenError } from '../tokenizer/special-tokens';
import { SentencePieceTokenizer, WORD_BOUNDARY } from '../tokenizer/sentencepiece';
import { TrainConfig, TrainConfigError, ConfigProblem } from './config';
import { ModelConfigs, paddedVocabSize } from './models';
import { ElectraModel } from './electra';
import { RTD_HEAD_FILE } from './export';
import type { DataSource } from './data';

export const INIT_REPORT_FILE = 'init-report.json';
/** Where a model directory's SentencePiece model may be, in order (DeBERTa-V3 names it spm.model). */
export const TOKENIZER_MODEL_NAMES = ['spm.model', 'tokenizer.model', 'sentencepiece.bpe.model'];

export type InitStatus = 'loaded' | 'fresh' | 'ignored' | 'resized';
export type InitPart = 'discriminator' | 'rtd_head' | 'generator' | 'embedding_delta' | 'model';

export interface InitEntry {
  part: InitPart;
  /** The parameter's key in its HF directory (for ignored entries: the checkpoint's key). */
  key: string;
  status: InitStatus;
  shape: number[];
  /** file (and key there, when it differs) the values come from */
  from?: string;
  sourceShape?: number[];
  note?: string;
}

export interface InitReport {
  format: 'camemberta-init-report';
  version: 1;
  objective: TrainConfig['objective'];
  embeddingSharing: string | null;
  discriminator: { dir: string; config: string; weights: string; architecture: string; tokenizer: string };
  generator: { dir: string; config: string; weights: string; architecture: string } | { dir: null; built: string };
  tokenizer: { model: string; data: string; relation: 'same' | 'extended'; ids: number; newIds: number; rows: { before: number; after: number } };
  notes: string[];
  counts: Record<InitStatus, number>;
  entries: InitEntry[];
}

export interface PretrainedInit {
  configs: ModelConfigs;
  /** The tokenizer the run must use (the data's). */
  tokenizerPath: string;
  /** null when only the configs were read (a resumed run: its checkpoint has the weights). */
  model: ElectraModel | DebertaV2ForMaskedLM | RobertaForMaskedLM | null;
  report: InitReport | null;
}

/** An error at the boundary: names the config key, the file and the tensor key. */
class InitProblems {
  readonly list: ConfigProblem[] = [];
  add(key: string, message: string): void {
    this.list.push({ key, message });
  }
  throwIfAny(source: string): void {
    if (this.list.length) throw new TrainConfigError(source, this.list);
  }
}

// ---- the directories ---------------------------------------------------------------------------

interface ModelDir {
  role: 'init.discriminator' | 'init.generator';
  dir: string;
  configFile: string;
  json: Record<string, unknown>;
  config: ModelConfig;
  architecture: string;
  weightsFile: string;
  tokenizerModel: string | null;
}

function weightsFileOf(dir: string): string | null {
  for (const name of [SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME]) {
    if (fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

export function tokenizerModelOf(dir: string): string | null {
  for (const name of TOKENIZER_MODEL_NAMES) if (fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  return null;
}

const DEBERTA_INPUT_CLASSES = ['DebertaV2Model', 'DebertaV2ForMaskedLM', 'DebertaV2ForTokenClassification', 'DebertaV2ForSequenceClassification', 'DebertaV2ForReplacedTokenDetection'];

function readModelDir(location: string, role: ModelDir['role'], wantType: ModelConfig['model_type'], problems: InitProblems): ModelDir | null {
  const dir = path.resolve(location);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    problems.add(role, `${dir}: no such directory`);
    return null;
  }
  const configFile = path.join(dir, CONFIG_NAME);
  if (!fs.existsSync(configFile)) {
    problems.add(role, `${configFile}: missing (not a HuggingFace model directory?)`);
    return null;
  }
  let json: Record<string, unknown>;
  let config: ModelConfig;
  try {
    json = readJsonFile(configFile) as Record<string, unknown>;
    config = parseModelConfig(json, configFile);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const p of error.problems) problems.add(role, `${configFile}: ${p.key}: ${p.message}`);
    } else {
      problems.add(role, `${configFile}: ${(error as Error).message}`);
    }
    return null;
  }
  if (config.model_type !== wantType) {
    problems.add(role, `${configFile}: model_type "${config.model_type}" (${(config.architectures ?? []).join(', ') || 'no architectures'}), but a ${wantType} model is needed here`);
    return null;
  }
  const named = config.architectures ?? [];
  const known = wantType === 'deberta-v2' ? DEBERTA_INPUT_CLASSES : Object.keys(ARCHITECTURES).filter((name) => ARCHITECTURES[name].modelType === wantType);
  const architecture = named.find((name) => known.includes(name)) ?? (named.length ? null : MODEL_TYPES[wantType].baseArchitecture);
  if (architecture === null) {
    problems.add(role, `${configFile}: architectures ${JSON.stringify(named)}: none of ${known.join(', ')}`);
    return null;
  }
  const weightsFile = weightsFileOf(dir);
  if (!weightsFile) {
    problems.add(role, `${dir}: no weights (looked for ${SAFETENSORS_NAME}, ${SAFETENSORS_INDEX_NAME}, ${PYTORCH_NAME}, ${PYTORCH_INDEX_NAME})`);
    return null;
  }
  return { role, dir, configFile, json, config, architecture, weightsFile, tokenizerModel: tokenizerModelOf(dir) };
}

// ---- tokenizers --------------------------------------------------------------------------------

interface TokenizerView {
  file: string;
  model: SentencePieceModel;
  special: SpecialTokens;
  /** id -> piece or added token */
  tokens: string[];
}

function viewTokenizer(file: string): TokenizerView {
  const model = readSentencePieceModel(file);
  const special = resolveSpecialTokens(model, readHfTokenizerFiles(file));
  const tokens = model.pieces.map((piece) => piece.piece);
  for (const token of special.added) tokens[token.id] = token.content;
  for (let id = 0; id < tokens.length; id++) if (tokens[id] === undefined) tokens[id] = '';
  return { file, model, special, tokens };
}

function normalizerKey(model: SentencePieceModel): string {
  const { name, addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces, precompiledCharsmap } = model.normalizer;
  return JSON.stringify([name, addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces, Buffer.from(precompiledCharsmap).toString('base64'), model.trainer.modelType]);
}

/**
 * 'same', or 'extended' (the data's tokenizer keeps every id of the model's and appends more),
 * or a sentence saying where they differ.
 */
export function compareTokenizers(modelTokenizer: TokenizerView, dataTokenizer: TokenizerView): { relation: 'same' | 'extended' } | { problem: string } {
  const a = modelTokenizer;
  const b = dataTokenizer;
  if (a.model.sha256 === b.model.sha256 && a.tokens.length === b.tokens.length && a.tokens.every((t, i) => t === b.tokens[i])
    && JSON.stringify(a.special.ids) === JSON.stringify(b.special.ids)) return { relation: 'same' };
  if (normalizerKey(a.model) !== normalizerKey(b.model)) return { problem: `the normalization (or model type) of ${b.file} differs from the model's ${a.file}: the same text would give other ids` };
  for (const role of ['pad', 'cls', 'sep', 'unk', 'mask'] as const) {
    if (a.special.ids[role] !== b.special.ids[role]) return { problem: `${role} is id ${a.special.ids[role]} in the model's ${a.file}, id ${b.special.ids[role]} in ${b.file}` };
  }
  const common = Math.min(a.tokens.length, b.tokens.length);
  for (let id = 0; id < common; id++) {
    if (a.tokens[id] !== b.tokens[id]) return { problem: `id ${id} is ${JSON.stringify(a.tokens[id])} in the model's ${a.file} but ${JSON.stringify(b.tokens[id])} in ${b.file}` };
    const typeA = a.model.pieces[id]?.type;
    const typeB = b.model.pieces[id]?.type;
    if (typeA !== undefined && typeB !== undefined && typeA !== typeB) return { problem: `id ${id} (${JSON.stringify(a.tokens[id])}) has piece type ${typeA} in the model's ${a.file}, ${typeB} in ${b.file}` };
  }
  if (b.tokens.length < a.tokens.length) return { problem: `${b.file} has ${b.tokens.length} ids, fewer than the model's ${a.file} (${a.tokens.length})` };
  if (b.tokens.length === a.tokens.length) return { relation: 'same' };
  return { relation: 'extended' };
}

/** The old tokenizer's ids of a new piece's text (a word-initial piece is encoded as a word). */
export function splitWithOldTokenizer(old: SentencePieceTokenizer, piece: string, unkId: number): number[] {
  const wordInitial = piece.startsWith(WORD_BOUNDARY);
  const text = piece.split(WORD_BOUNDARY).join(' ');
  let ids = Array.from(old.encode(wordInitial ? text.trimStart() : text));
  // Encoding adds a word boundary in front: a piece from inside a word must not get its row.
  if (!wordInitial && ids.length > 1 && old.idToPiece(ids[0]) === WORD_BOUNDARY) ids = ids.slice(1);
  return ids.length ? ids : [unkId];
}

// ---- vocabulary rows ---------------------------------------------------------------------------

interface VocabularyGrowth {
  /** ids of the old tokenizer (pieces + added tokens) */
  oldIds: number;
  /** new id -> the old ids whose mean its row starts from */
  newTokens: { id: number; token: string; oldIds: number[] }[];
}

/** Rows after growth: the model's own count when it holds the ids, else the ids rounded up to 8. */
export function rowsAfterGrowth(configRows: number, ids: number): number {
  return configRows >= ids ? configRows : paddedVocabSize(ids);
}

/** Keys whose first dimension is the vocabulary (their new rows are means of old ones). */
const VOCABULARY_ROW_KEYS = [
  /(^|\.)embeddings\.word_embeddings\.weight$/,
  /^cls\.predictions\.(decoder\.)?bias$/,
  /^lm_predictions\.lm_head\.bias$/,
  /^lm_head\.(decoder\.)?bias$/,
];

function isVocabularyKey(key: string): boolean {
  return VOCABULARY_ROW_KEYS.some((pattern) => pattern.test(key));
}

/**
 * Copies a source with other row count into target (already initialised fresh): the rows both
 * have, then each new token's row as the mean of its old pieces' rows. Rows beyond both (padding
 * to a multiple of 8) keep their fresh values.
 */
function copyGrowingRows(target: Tensor, source: Tensor, growth: VocabularyGrowth): void {
  noGrad(() => {
    const common = Math.min(source.shape[0], target.shape[0]);
    target.narrow(0, 0, common).copy_(source.narrow(0, 0, common));
    for (const { id, oldIds } of growth.newTokens) {
      if (id >= target.shape[0]) continue;
      const index = tensor(oldIds, { dtype: 'int64' }) as Tensor<'int64'>;
      const rows = source.indexSelect(0, index);
      const mean = rows.mean(0);
      target.select(0, id).copy_(mean);
      dispose([index, rows, mean]);
    }
  });
}

/** The overlapping block of source copied into target (init.allow_resize); the rest stays fresh. */
function copyOverlap(target: Tensor, source: Tensor): void {
  noGrad(() => {
    let t = target;
    let s = source;
    const views: Tensor[] = [];
    for (let dim = 0; dim < target.shape.length; dim++) {
      const n = Math.min(t.shape[dim], s.shape[dim]);
      t = t.narrow(dim, 0, n);
      s = s.narrow(dim, 0, n);
      views.push(t, s);
    }
    t.copy_(s);
    dispose(views);
  });
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((n, i) => n === b[i]);
const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;

// ---- loading into modules ----------------------------------------------------------------------

interface LoadContext {
  role: ModelDir['role'];
  part: InitPart;
  file: string;
  /** The state-dict prefix of the reported key (the HF name): '' or 'deberta.' */
  reportPrefix: string;
  growth: VocabularyGrowth | null;
  allowResize: boolean;
  /** Parameters handled elsewhere (the shared word embeddings). */
  skip: Set<Parameter<DType>>;
  /** A missing key that may be initialised fresh: the note to report, or null (then an error). */
  freshNote: (key: string) => string | null;
  problems: InitProblems;
  entries: InitEntry[];
}

/** Loads target's parameters from source (keys relative to target); returns the source keys used. */
function loadModule(target: Module, source: Map<string, Tensor>, ctx: LoadContext, tied: readonly string[] = []): Set<string> {
  const used = new Set<string>();
  const pathsOf = new Map<Parameter<DType>, string[]>();
  for (const [key, parameter] of target.namedParameterPaths()) {
    const paths = pathsOf.get(parameter);
    if (paths) paths.push(key);
    else pathsOf.set(parameter, [key]);
  }
  for (const [parameter, paths] of pathsOf) {
    // Tied aliases (the MLM decoder) are saved under the other name: read them from either.
    for (const key of paths) if (source.has(key)) used.add(key);
    if (ctx.skip.has(parameter)) continue;
    const name = paths.find((key) => !tied.includes(key)) ?? paths[0];
    const key = paths.find((k) => source.has(k));
    const reported = `${ctx.reportPrefix}${name}`;
    const shape = parameter.shape;
    if (key === undefined) {
      const note = ctx.freshNote(name);
      if (note === null) ctx.problems.add(ctx.role, `${ctx.file}: no ${ctx.reportPrefix}${name} (${shapeText(shape)}) for the model built from its config.json`);
      else ctx.entries.push({ part: ctx.part, key: reported, status: 'fresh', shape, note });
      continue;
    }
    const value = source.get(key)!;
    const from = key === name ? ctx.file : `${ctx.file}:${ctx.reportPrefix}${key}`;
    if (sameShape(value.shape, shape)) {
      if (ctx.growth && isVocabularyKey(name)) {
        copyGrowingRows(parameter, value, ctx.growth);
        ctx.entries.push({ part: ctx.part, key: reported, status: 'resized', shape, from, sourceShape: value.shape, note: growthNote(ctx.growth, value.shape[0], shape[0]) });
      } else {
        noGrad(() => parameter.copy_(value));
        ctx.entries.push({ part: ctx.part, key: reported, status: 'loaded', shape, from });
      }
    } else if (ctx.growth && isVocabularyKey(name) && sameShape(value.shape.slice(1), shape.slice(1))) {
      copyGrowingRows(parameter, value, ctx.growth);
      ctx.entries.push({ part: ctx.part, key: reported, status: 'resized', shape, from, sourceShape: value.shape, note: growthNote(ctx.growth, value.shape[0], shape[0]) });
    } else if (ctx.allowResize && value.shape.length === shape.length) {
      copyOverlap(parameter, value);
      ctx.entries.push({ part: ctx.part, key: reported, status: 'resized', shape, from, sourceShape: value.shape, note: 'init.allow_resize: the overlapping block copied, the rest initialised fresh' });
    } else {
      ctx.problems.add(ctx.role, `${ctx.file}: ${ctx.reportPrefix}${key}: shape ${shapeText(value.shape)} there, ${shapeText(shape)} in the model built from its config.json${ctx.allowResize ? '' : ' (init.allow_resize: true copies the overlapping block)'}`);
    }
  }
  return used;
}

function growthNote(growth: VocabularyGrowth, sourceRows: number, rows: number): string {
  const added = growth.newTokens.length;
  return `vocabulary ${sourceRows} -> ${rows} rows: ids ${growth.oldIds}..${growth.oldIds + added - 1} (${added} new) start as the mean of their old pieces' rows`
    + (rows > Math.max(sourceRows, growth.oldIds + added) ? `, rows ${Math.max(sourceRows, growth.oldIds + added)}..${rows - 1} padding (fresh)` : '');
}

/** Heads a base model ignores (other than the RTD head, which the discriminator uses). */
const HEAD_PREFIXES = ['lm_predictions.', 'cls.', 'classifier.', 'pooler.', 'mask_predictions.', 'lm_head.', 'discriminator_predictions.'];
const isHeadKey = (key: string) => HEAD_PREFIXES.some((prefix) => key.startsWith(prefix));

/** Checkpoint keys split into the base model's (without `deberta.`) and the heads'. */
function splitBase(tensors: Map<string, Tensor>, prefix: string): { base: Map<string, Tensor>; heads: Map<string, Tensor> } {
  const base = new Map<string, Tensor>();
  const heads = new Map<string, Tensor>();
  for (const [key, value] of tensors) {
    if (key.startsWith(prefix)) base.set(key.slice(prefix.length), value);
    else if (isHeadKey(key)) heads.set(key, value);
    else base.set(key, value);
  }
  return { base, heads };
}

function reportLeftovers(source: Map<string, Tensor>, used: Set<string>, ctx: { role: ModelDir['role']; part: InitPart; file: string; prefix: string; modelType: ModelConfig['model_type'] },
  entries: InitEntry[], problems: InitProblems, headNote: string): void {
  const ignorable = MODEL_TYPES[ctx.modelType].ignoredUnexpected;
  for (const [key, value] of source) {
    if (used.has(key)) continue;
    const full = `${ctx.prefix}${key}`;
    if (isHeadKey(key)) entries.push({ part: ctx.part, key: full, status: 'ignored', shape: value.shape, from: ctx.file, note: headNote });
    else if (ignorable.some((pattern) => pattern.test(full) || pattern.test(key))) entries.push({ part: ctx.part, key: full, status: 'ignored', shape: value.shape, from: ctx.file, note: 'not used by this architecture (transformers ignores it too)' });
    else problems.add(ctx.role, `${ctx.file}: ${full}: no such key in the model built from its config.json (another architecture?)`);
  }
}

function readRtdHead(dir: ModelDir, heads: Map<string, Tensor>): { tensors: Map<string, Tensor>; file: string | null; owned: Tensor[] } {
  const prefix = 'discriminator_predictions.';
  const file = path.join(dir.dir, RTD_HEAD_FILE);
  if (fs.existsSync(file)) {
    const tensors = new Map<string, Tensor>();
    for (const [name, entry] of iterateSafetensors(file)) tensors.set(name.startsWith(prefix) ? name.slice(prefix.length) : name, fromSafetensorsEntry(entry, name, file));
    return { tensors, file, owned: [...tensors.values()] };
  }
  const tensors = new Map([...heads].filter(([key]) => key.startsWith(prefix)).map(([key, value]) => [key.slice(prefix.length), value] as const));
  return { tensors, file: tensors.size ? dir.weightsFile : null, owned: [] };
}

// ---- the plan ----------------------------------------------------------------------------------

/** The data's tokenizer: the prepared shards' own, else data.tokenizer, else the model's. */
function dataTokenizerOf(source: DataSource, config: TrainConfig, modelTokenizer: string | null): string | null {
  if (source.kind === 'prepared') {
    const manifest = JSON.parse(fs.readFileSync(path.join(source.dir, 'manifest.json'), 'utf8'));
    return path.join(source.dir, manifest.tokenizer.file);
  }
  return config.data.tokenizer ?? modelTokenizer;
}

/**
 * With init.discriminator and raw text without data.tokenizer, the data is tokenized with the
 * model's own tokenizer (training a new one could never match the model's ids).
 */
export function withPretrainedTokenizer(config: TrainConfig): TrainConfig {
  if (!config.init.discriminator || config.data.tokenizer !== null) return config;
  const tokenizer = tokenizerModelOf(path.resolve(config.init.discriminator));
  return tokenizer ? { ...config, data: { ...config.data, tokenizer } } : config;
}

function withArchitecture<C extends ModelConfig>(config: C, architecture: string, vocabSize: number): C {
  return { ...config, architectures: [architecture], vocab_size: vocabSize };
}

/**
 * Reads and checks everything init needs; with `loadWeights` also builds the model and fills it
 * (fresh parts from `seed`). Problems are TrainConfigErrors naming the key and file, before
 * anything is written.
 */
export async function initialiseFromPretrained(config: TrainConfig, dataSource: DataSource, source: string,
  options: { loadWeights: boolean }): Promise<PretrainedInit> {
  const problems = new InitProblems();
  const electra = config.objective === 'electra';
  const mainType = config.model.type;
  const disc = readModelDir(config.init.discriminator!, 'init.discriminator', electra ? 'deberta-v2' : mainType, problems);
  const genDir = electra && config.init.generator ? readModelDir(config.init.generator, 'init.generator', 'deberta-v2', problems) : null;
  problems.throwIfAny(source);

  // Tokenizers: the model's must be the data's, or the data's must extend it.
  if (!disc!.tokenizerModel) {
    problems.add('init.discriminator', `${disc!.dir}: no SentencePiece model (${TOKENIZER_MODEL_NAMES.join(', ')}): the model's tokenizer must be known to check it against the data's`);
  }
  const dataTokenizerFile = dataTokenizerOf(dataSource, config, disc!.tokenizerModel);
  problems.throwIfAny(source);
  let modelTokenizer: TokenizerView;
  let dataTokenizer: TokenizerView;
  try {
    modelTokenizer = viewTokenizer(disc!.tokenizerModel!);
  } catch (error) {
    throw new TrainConfigError(source, [{ key: 'init.discriminator', message: `${disc!.tokenizerModel}: ${(error as Error).message}` }]);
  }
  try {
    dataTokenizer = viewTokenizer(dataTokenizerFile!);
  } catch (error) {
    throw new TrainConfigError(source, [{ key: 'data.tokenizer', message: `${dataTokenizerFile}: ${(error as Error).message}` }]);
  }
  const relation = compareTokenizers(modelTokenizer, dataTokenizer);
  if ('problem' in relation) problems.add('data.tokenizer', `the data's tokenizer does not match the model's: ${relation.problem}`);
  if (genDir?.tokenizerModel) {
    const genTokenizer = viewTokenizer(genDir.tokenizerModel);
    const genRelation = compareTokenizers(modelTokenizer, genTokenizer);
    if ('problem' in genRelation || genRelation.relation !== 'same') {
      problems.add('init.generator', `the generator's tokenizer differs from the discriminator's: ${'problem' in genRelation ? genRelation.problem : `${genTokenizer.file} has ${genTokenizer.tokens.length - modelTokenizer.tokens.length} more ids`}`);
    }
  }
  problems.throwIfAny(source);
  const extended = (relation as { relation: 'same' | 'extended' }).relation === 'extended';
  const ids = dataTokenizer.tokens.length;

  // Configs: the directories' architecture; rows grown for an extended tokenizer.
  const checkTokens = (dir: ModelDir) => {
    try {
      const eos = dir.config.eos_token_id;
      checkAgainstModelConfig(modelTokenizer.special, {
        vocab_size: dir.config.vocab_size, pad_token_id: dir.config.pad_token_id, bos_token_id: dir.config.bos_token_id, eos_token_id: Array.isArray(eos) ? eos[0] : eos,
      }, dir.configFile);
    } catch (error) {
      if (error instanceof SpecialTokenError) problems.add(dir.role, error.message);
      else throw error;
    }
  };
  checkTokens(disc!);
  if (genDir) checkTokens(genDir);
  problems.throwIfAny(source);

  const mainRows = rowsAfterGrowth(disc!.config.vocab_size, ids);
  const notes: string[] = [`the architecture comes from ${disc!.configFile}${genDir ? ` and ${genDir.configFile}` : ''}: model.preset, model.config${electra && genDir ? ' and model.generator' : ''} of the training config are ignored`];
  let main: ModelConfig;
  let generator: DebertaV2Config | null = null;
  if (electra) {
    main = withArchitecture(disc!.config as DebertaV2Config, 'DebertaV2Model', mainRows);
    if (genDir) {
      generator = withArchitecture(genDir.config as DebertaV2Config, 'DebertaV2ForMaskedLM', rowsAfterGrowth(genDir.config.vocab_size, ids));
    } else {
      const { hidden_ratio: hiddenRatio, layer_ratio: layerRatio } = config.model.generator;
      try {
        const derived = generatorFromDiscriminator({ ...(main as DebertaV2Config), extra: {} }, { hiddenRatio, layerRatio });
        const { extra, ...fields } = derived;
        generator = parseDebertaConfig({ ...extra, ...fields, ...config.model.generator.config }, source);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const p of error.problems) problems.add('model.generator', `${p.key}: ${p.message}`);
      }
      if (generator) notes.push(`no init.generator: the generator is built at hidden_ratio ${hiddenRatio}, layer_ratio ${layerRatio} of the discriminator (hidden ${generator.hidden_size}, ${generator.num_hidden_layers} layers, ${generator.num_attention_heads} heads, embedding_size ${generator.embedding_size}) and initialised fresh`);
    }
    if (generator && config.electra.embedding_sharing !== 'none') {
      const d = main as DebertaV2Config;
      for (const key of ['vocab_size', 'embedding_size'] as const) {
        if (generator[key] !== d[key]) problems.add(genDir ? 'init.generator' : 'model.generator.config', `${key} ${generator[key]} differs from the discriminator's ${d[key]} (${disc!.configFile}): embedding sharing "${config.electra.embedding_sharing}" needs one table`);
      }
    }
  } else {
    const architecture = mainType === 'roberta' ? 'RobertaForMaskedLM' : 'DebertaV2ForMaskedLM';
    main = withArchitecture(disc!.config, architecture, mainRows);
  }
  if (main.max_position_embeddings < config.data.seq_length && (main.model_type === 'roberta' || (main as DebertaV2Config).position_biased_input)) {
    problems.add('data.seq_length', `${config.data.seq_length} exceeds max_position_embeddings ${main.max_position_embeddings} of ${disc!.configFile}`);
  }
  problems.throwIfAny(source);
  const configs: ModelConfigs = { main, generator };
  const tokenizerReport = {
    model: modelTokenizer.file, data: dataTokenizer.file, relation: extended ? 'extended' as const : 'same' as const,
    ids, newIds: ids - modelTokenizer.tokens.length, rows: { before: disc!.config.vocab_size, after: mainRows },
  };
  if (!options.loadWeights) return { configs, tokenizerPath: dataTokenizer.file, model: null, report: null };

  let growth: VocabularyGrowth | null = null;
  if (extended) {
    const old = await SentencePieceTokenizer.load(modelTokenizer.file);
    growth = { oldIds: modelTokenizer.tokens.length, newTokens: [] };
    for (let id = modelTokenizer.tokens.length; id < ids; id++) {
      growth.newTokens.push({ id, token: dataTokenizer.tokens[id], oldIds: splitWithOldTokenizer(old, dataTokenizer.tokens[id], modelTokenizer.special.ids.unk) });
    }
    notes.push(`the data's tokenizer ${dataTokenizer.file} extends the model's with ${growth.newTokens.length} ids: vocabulary rows ${disc!.config.vocab_size} -> ${mainRows}`);
  }

  const entries: InitEntry[] = [];
  const initGenerator = new Generator({ seed: config.seed });
  const model = electra
    ? new ElectraModel(generator!, main as DebertaV2Config, config.electra.embedding_sharing, { generator: initGenerator, init: 'truncated' })
    : (main.model_type === 'deberta-v2' ? new DebertaV2ForMaskedLM(main as DebertaV2Config, { generator: initGenerator, init: 'truncated' })
      : new RobertaForMaskedLM(main as RobertaConfig, { generator: initGenerator, init: 'truncated' }));
  initGenerator.dispose();
  const owned: Tensor[] = [];
  try {
    const read = (dir: ModelDir) => {
      try {
        const { tensors } = readCheckpoint(dir.dir);
        owned.push(...tensors.values());
        return tensors;
      } catch (error) {
        throw new TrainConfigError(source, [{ key: dir.role, message: (error as Error).message }]);
      }
    };
    const allowResize = config.init.allow_resize;
    const discTensors = read(disc!);
    if (model instanceof ElectraModel) {
      const { base, heads } = splitBase(discTensors, 'deberta.');
      const sharedWords = model.discriminator.deberta.embeddings.word_embeddings.weight;
      const sharing = config.electra.embedding_sharing;
      const ctx: LoadContext = {
        role: 'init.discriminator', part: 'discriminator', file: disc!.weightsFile, reportPrefix: '', growth, allowResize,
        skip: new Set([sharedWords]), freshNote: () => null, problems, entries,
      };
      // The word embeddings are set below, by embedding sharing.
      const used = loadModule(model.discriminator.deberta, base, ctx);
      const wordsKey = 'embeddings.word_embeddings.weight';
      used.add(wordsKey);
      reportLeftovers(base, used, { role: 'init.discriminator', part: 'discriminator', file: disc!.weightsFile, prefix: '', modelType: 'deberta-v2' }, entries, problems, '');

      const rtd = readRtdHead(disc!, heads);
      owned.push(...rtd.owned);
      const rtdUsed = loadModule(model.discriminator.discriminator_predictions, rtd.tensors, {
        ...ctx, part: 'rtd_head', file: rtd.file ?? disc!.dir, reportPrefix: 'discriminator_predictions.', skip: new Set(), growth: null,
        freshNote: () => (rtd.file ? null : `no RTD head in ${disc!.dir} (${RTD_HEAD_FILE} or discriminator_predictions.* keys): initialised fresh`),
      });
      for (const key of rtd.tensors.keys()) if (!rtdUsed.has(key)) problems.add('init.discriminator', `${rtd.file}: discriminator_predictions.${key}: not a key of the RTD head`);
      const headNote = `a head of ${disc!.architecture}: the discriminator takes the base model only`;
      for (const [key, value] of heads) {
        if (!key.startsWith('discriminator_predictions.')) entries.push({ part: 'discriminator', key, status: 'ignored', shape: value.shape, from: disc!.weightsFile, note: headNote });
      }

      // The generator: its directory, or fresh with the discriminator's word embeddings.
      const genModule = model.generator;
      let genWords: Tensor | null = null;
      let genWordsFrom = '';
      if (genDir) {
        const genTensors = read(genDir);
        // A base-model save has no `deberta.` prefix: give it one, as transformers does.
        const prefixed = [...genTensors.keys()].some((key) => key.startsWith('deberta.'));
        const normalised = new Map([...genTensors].map(([key, value]) => [prefixed || isHeadKey(key) ? key : `deberta.${key}`, value] as const));
        const hasHead = [...normalised.keys()].some((key) => key.startsWith('cls.') || key.startsWith('lm_predictions.'));
        const genCtx: LoadContext = {
          role: 'init.generator', part: 'generator', file: genDir.weightsFile, reportPrefix: '', growth, allowResize,
          skip: new Set(sharing === 'none' ? [] : [genModule.deberta.embeddings.word_embeddings.weight]), problems, entries,
          freshNote: (key) => (!hasHead && !key.startsWith('deberta.') ? `${genDir.dir} has no masked-LM head (${genDir.architecture}): initialised fresh` : null),
        };
        const genUsed = loadModule(genModule, normalised, genCtx, genModule.tiedWeightKeys);
        const genWordsKey = 'deberta.embeddings.word_embeddings.weight';
        if (sharing !== 'none') {
          genUsed.add(genWordsKey);
          genWords = normalised.get(genWordsKey) ?? null;
          genWordsFrom = genDir.weightsFile;
          if (!genWords) problems.add('init.generator', `${genDir.weightsFile}: no ${genWordsKey}`);
        }
        for (const key of genModule.tiedWeightKeys) if (normalised.has(key) && !genUsed.has(key)) genUsed.add(key);
        reportLeftovers(normalised, genUsed, { role: 'init.generator', part: 'generator', file: genDir.weightsFile, prefix: '', modelType: 'deberta-v2' }, entries, problems,
          `not a masked-LM head key of ${genDir.architecture}`);
      } else {
        const note = 'no init.generator: initialised fresh at the configured size';
        const sharedParameter = genModule.deberta.embeddings.word_embeddings.weight;
        const seen = new Set<Parameter<DType>>();
        for (const [key, parameter] of genModule.namedParameterPaths()) {
          if (seen.has(parameter) || genModule.tiedWeightKeys.includes(key)) continue;
          seen.add(parameter);
          // Its word embeddings start from the discriminator's (below).
          if (parameter === sharedParameter) continue;
          entries.push({ part: 'generator', key, status: 'fresh', shape: parameter.shape, note });
        }
      }

      problems.throwIfAny(source);
      const discWords = base.get(wordsKey);
      if (!discWords) throw new TrainConfigError(source, [{ key: 'init.discriminator', message: `${disc!.weightsFile}: no deberta.${wordsKey}` }]);
      writeWordEmbeddings(model, { source, discWords, discFrom: disc!.weightsFile, genWords, genFrom: genWordsFrom, generatorDir: genDir !== null, growth, sharing, entries, allowResize });
    } else {
      const prefix = `${(model as PreTrainedModule).baseModelPrefix}.`;
      const prefixed = [...discTensors.keys()].some((key) => key.startsWith(prefix));
      const normalised = new Map([...discTensors].map(([key, value]) => [prefixed || isHeadKey(key) ? key : `${prefix}${key}`, value] as const));
      const hasHead = [...normalised.keys()].some((key) => !key.startsWith(prefix) && (key.startsWith('cls.') || key.startsWith('lm_predictions.') || key.startsWith('lm_head.')));
      const used = loadModule(model, normalised, {
        role: 'init.discriminator', part: 'model', file: disc!.weightsFile, reportPrefix: '', growth, allowResize, skip: new Set(), problems, entries,
        freshNote: (key) => (!hasHead && !key.startsWith(prefix) ? `${disc!.dir} has no masked-LM head (${disc!.architecture}): initialised fresh` : null),
      }, (model as PreTrainedModule).tiedWeightKeys);
      for (const key of (model as PreTrainedModule).tiedWeightKeys) used.add(key);
      reportLeftovers(normalised, used, { role: 'init.discriminator', part: 'model', file: disc!.weightsFile, prefix: '', modelType: main.model_type }, entries, problems,
        `a head of ${disc!.architecture} the masked-LM model does not have`);
    }
    problems.throwIfAny(source);
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    dispose(owned);
  }

  const counts: Record<InitStatus, number> = { loaded: 0, fresh: 0, ignored: 0, resized: 0 };
  for (const entry of entries) counts[entry.status]++;
  const report: InitReport = {
    format: 'camemberta-init-report', version: 1, objective: config.objective,
    embeddingSharing: electra ? config.electra.embedding_sharing : null,
    discriminator: { dir: disc!.dir, config: disc!.configFile, weights: disc!.weightsFile, architecture: disc!.architecture, tokenizer: modelTokenizer.file },
    generator: !electra ? { dir: null, built: 'none (mlm)' } : genDir
      ? { dir: genDir.dir, config: genDir.configFile, weights: genDir.weightsFile, architecture: genDir.architecture }
      : { dir: null, built: `fresh at hidden_ratio ${config.model.generator.hidden_ratio}, layer_ratio ${config.model.generator.layer_ratio}` },
    tokenizer: tokenizerReport,
    notes,
    counts,
    entries,
  };
  return { configs, tokenizerPath: dataTokenizer.file, model, report };
}

/**
 * The word embeddings by sharing. GDES: E_G = the generator's table (the discriminator's when
 * there is no generator), E_delta = E_D - E_G, so that E_G + E_delta is the discriminator's table.
 * ES: one table, the discriminator's. none: each model its own (a fresh generator copies the
 * discriminator's when the widths match).
 */
function writeWordEmbeddings(model: ElectraModel, args: {
  source: string; discWords: Tensor; discFrom: string; genWords: Tensor | null; genFrom: string; generatorDir: boolean;
  growth: VocabularyGrowth | null; sharing: string; entries: InitEntry[]; allowResize: boolean;
}): void {
  const { discWords, genWords, growth, entries } = args;
  const discKey = 'embeddings.word_embeddings.weight';
  const genKey = 'deberta.embeddings.word_embeddings.weight';
  const shared = model.generatorEmbeddings;
  const rows = shared.shape[0];
  const fill = (target: Tensor, value: Tensor, role: ModelDir['role'], file: string, key: string) => {
    if (sameShape(value.shape, target.shape) && !growth) {
      noGrad(() => target.copy_(value));
      return 'loaded' as const;
    }
    if (sameShape(value.shape.slice(1), target.shape.slice(1)) && (growth || args.allowResize)) {
      if (growth) copyGrowingRows(target, value, growth);
      else copyOverlap(target, value);
      return 'resized' as const;
    }
    throw new TrainConfigError(args.source, [{ key: role, message: `${file}: ${key}: shape ${shapeText(value.shape)} there, ${shapeText(target.shape)} in the model` }]);
  };
  const note = (status: InitStatus, value: Tensor) => (status === 'resized' && growth ? growthNote(growth, value.shape[0], rows) : undefined);
  if (args.sharing === 'gdes') {
    // The discriminator's table, grown the same way, in a scratch copy of E_G's fresh rows.
    const discTable = noGrad(() => shared.clone());
    try {
      const discStatus = fill(discTable, discWords, 'init.discriminator', args.discFrom, `deberta.${discKey}`);
      const genStatus = genWords ? fill(shared, genWords, 'init.generator', args.genFrom, genKey) : (noGrad(() => shared.copy_(discTable)), 'loaded' as const);
      const inexact = setDelta(model.embedding_delta!, discTable, shared);
      entries.push({ part: 'discriminator', key: discKey, status: discStatus, shape: discTable.shape, from: args.discFrom, sourceShape: discWords.shape, note: note(discStatus, discWords) ?? 'GDES: trained as E_G + embedding_delta (exported as their sum)' });
      entries.push({ part: 'generator', key: genKey, status: genWords ? genStatus : discStatus, shape: shared.shape, sourceShape: (genWords ?? discWords).shape, from: genWords ? args.genFrom : `${args.discFrom}:deberta.${discKey}`,
        note: genWords ? note(genStatus, genWords) ?? 'GDES: the shared table E_G' : 'no init.generator: the discriminator\'s word embeddings (GDES: E_G)' });
      entries.push({ part: 'embedding_delta', key: 'embedding_delta', status: 'loaded', shape: model.embedding_delta!.shape, from: 'discriminator - generator',
        note: `GDES: E_delta = E_D - E_G, so the starting discriminator is the released one (E_G + E_delta == E_D exactly in all but ${inexact} of ${discTable.numel()} values)` });
    } finally {
      discTable.dispose();
    }
  } else if (args.sharing === 'es') {
    const status = fill(shared, discWords, 'init.discriminator', args.discFrom, `deberta.${discKey}`);
    entries.push({ part: 'discriminator', key: discKey, status, shape: shared.shape, from: args.discFrom, sourceShape: discWords.shape, note: note(status, discWords) ?? 'ES: one table for both models' });
    if (genWords) entries.push({ part: 'generator', key: genKey, status: 'ignored', shape: genWords.shape, from: args.genFrom, note: 'ES: the generator reads the discriminator\'s table' });
    else entries.push({ part: 'generator', key: genKey, status: status, shape: shared.shape, from: `${args.discFrom}:deberta.${discKey}`, note: 'ES: the discriminator\'s table' });
  } else {
    const own = model.discriminator.deberta.embeddings.word_embeddings.weight;
    const status = fill(own, discWords, 'init.discriminator', args.discFrom, `deberta.${discKey}`);
    entries.push({ part: 'discriminator', key: discKey, status, shape: own.shape, from: args.discFrom, sourceShape: discWords.shape, note: note(status, discWords) });
    if (!args.generatorDir) {
      if (sameShape(shared.shape, own.shape)) {
        noGrad(() => shared.copy_(own));
        entries.push({ part: 'generator', key: genKey, status: 'loaded', shape: shared.shape, from: `${args.discFrom}:deberta.${discKey}`, note: 'no init.generator: a copy of the discriminator\'s word embeddings' });
      } else {
        entries.push({ part: 'generator', key: genKey, status: 'fresh', shape: shared.shape, note: `no init.generator, and embedding_size ${shared.shape[1]} differs from the discriminator's ${own.shape[1]}: initialised fresh` });
      }
    }
  }
}

/**
 * delta = d - g, corrected until float32 g + delta gives d back (d - g rounds; two corrections
 * make the sum exact wherever delta's precision allows). Returns the values still not exact.
 */
function setDelta(delta: Tensor, d: Tensor, g: Tensor): number {
  return noGrad(() => {
    const current = d.sub(g);
    for (let i = 0; i < 2; i++) {
      const sum = g.add(current);
      const error = d.sub(sum);
      current.add_(error);
      dispose([sum, error]);
    }
    delta.copy_(current);
    const sum = g.add(current);
    const differs = sum.ne(d);
    const total = differs.sum();
    const count = total.item();
    dispose([current, sum, differs, total]);
    return count;
  });
}

// ---- the report --------------------------------------------------------------------------------

/** The report as lines for the terminal: notes, then one line per key. */
export function formatInitReport(report: InitReport): string[] {
  const lines = report.notes.map((note) => `init: ${note}`);
  const c = report.counts;
  lines.push(`init: ${c.loaded} loaded, ${c.fresh} initialised fresh, ${c.ignored} ignored, ${c.resized} resized (${INIT_REPORT_FILE} has every key)`);
  const width = Math.max(...report.entries.map((e) => `${e.part}/${e.key}`.length), 10);
  for (const entry of report.entries) {
    const name = `${entry.part}/${entry.key}`.padEnd(width);
    const from = entry.sourceShape && !sameShape(entry.sourceShape, entry.shape) ? ` (was ${shapeText(entry.sourceShape)})` : '';
    lines.push(`init:   ${entry.status.padEnd(7)} ${name} ${shapeText(entry.shape)}${from}${entry.note ? `  ${entry.note}` : ''}`);
  }
  return lines;
}

export function writeInitReport(outputDir: string, report: InitReport, say: (line: string) => void): void {
  for (const line of formatInitReport(report)) say(line);
  writeFileAtomicSyncFrom(path.join(outputDir, INIT_REPORT_FILE), `${JSON.stringify(report, null, 2)}\n`);
}

export interface PretrainedInitPlan {
  configs: ModelConfigs;
  tokenizerPath: string;
  /** Builds and fills the model, with the report (still before anything is written). */
  load(): Promise<{ model: NonNullable<PretrainedInit['model']>; report: InitReport }>;
}

/** The configs now (they decide everything else the run checks); the weights when asked. */
export async function planPretrainedInit(config: TrainConfig, dataSource: DataSource, source: string): Promise<PretrainedInitPlan> {
  const { configs, tokenizerPath } = await initialiseFromPretrained(config, dataSource, source, { loadWeights: false });
  return {
    configs,
    tokenizerPath,
    load: async () => {
      const { model, report } = await initialiseFromPretrained(config, dataSource, source, { loadWeights: true });
      return { model: model!, report: report! };
    },
  };
}
