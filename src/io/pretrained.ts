// HuggingFace-compatible model directories: config.json + model.safetensors (and/or
// pytorch_model.bin), interchangeable with transformers' save_pretrained / from_pretrained.
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, DType, saveTensors, loadTensors, fromBytes, dispose } from '../tensor';
import { describeResult, LoadStateDictResult, StateDictError } from '../nn';
import { PreTrainedModule, ModelConfig, ModelInitOptions } from '../models/pretrained-module';
import { ARCHITECTURES, BASE_ARCHITECTURE, createModel } from '../models/registry';
import { parseDebertaConfig, debertaConfigToJson, DebertaV2Config } from '../models/deberta/config';
import { parseRobertaConfig, robertaConfigToJson, RobertaConfig } from '../models/roberta/config';
import { readJsonFile, ConfigError } from '../models/config-json';
import {
  SafetensorsDtype, SafetensorsSource, SafetensorsTensor, iterateSafetensors, iterateShardedSafetensors, writeSafetensors,
  SINGLE_FILE_NAME, SHARDED_INDEX_NAME,
} from './safetensors';
import { updateDirectoryAtomicSync } from './atomic';

export const CONFIG_NAME = 'config.json';
export const SAFETENSORS_NAME = SINGLE_FILE_NAME;
export const SAFETENSORS_INDEX_NAME = SHARDED_INDEX_NAME;
export const PYTORCH_NAME = 'pytorch_model.bin';
export const PYTORCH_INDEX_NAME = 'pytorch_model.bin.index.json';

// ---- tensors <-> safetensors entries -----------------------------------------------------------

const TO_SAFETENSORS: Partial<Record<DType, SafetensorsDtype>> = {
  float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_SAFETENSORS: Partial<Record<SafetensorsDtype, DType>> = Object.fromEntries(
  Object.entries(TO_SAFETENSORS).map(([dtype, name]) => [name, dtype]),
);

/** A tensor's bytes as a safetensors entry (a CPU copy in row-major order). */
export function toSafetensorsEntry(t: Tensor, name = '<tensor>'): SafetensorsTensor {
  const dtype = TO_SAFETENSORS[t.dtype as DType];
  if (!dtype) throw new Error(`${name}: dtype ${t.dtype} has no safetensors equivalent`);
  const contiguous = t.contiguous();
  try {
    const values = contiguous.toTypedArray() as ArrayBufferView;
    return { dtype, shape: t.shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
  } finally {
    contiguous.dispose();
  }
}

/**
 * A tensor as a writer source whose bytes are copied out only when the writer reaches it, so a
 * checkpoint larger than memory allows twice (model + optimizer state) still saves.
 */
export function toSafetensorsSource(t: Tensor, name = '<tensor>'): SafetensorsSource {
  const dtype = TO_SAFETENSORS[t.dtype as DType];
  if (!dtype) throw new Error(`${name}: dtype ${t.dtype} has no safetensors equivalent`);
  return { dtype, shape: t.shape, data: () => toSafetensorsEntry(t, name).data };
}

/** A safetensors entry as a CPU tensor of the same dtype. */
export function fromSafetensorsEntry(entry: SafetensorsTensor, name = '<tensor>', source = '<safetensors>'): Tensor {
  const dtype = FROM_SAFETENSORS[entry.dtype];
  if (!dtype) throw new Error(`${source}: tensor ${JSON.stringify(name)}: dtype ${entry.dtype} is not supported by libtorch here`);
  return fromBytes(entry.data, dtype, entry.shape);
}

// ---- saving ------------------------------------------------------------------------------------

export type SaveFormat = 'safetensors' | 'bin' | 'both';

export function configToJson(config: ModelConfig, architecture: string): Record<string, unknown> {
  const withArchitecture = { ...config, architectures: [architecture] };
  return config.model_type === 'deberta-v2'
    ? debertaConfigToJson(withArchitecture as DebertaV2Config)
    : robertaConfigToJson(withArchitecture as RobertaConfig);
}

/** The tensors a checkpoint of the model holds: every state-dict path except tied aliases. */
export function checkpointTensors(model: PreTrainedModule): Map<string, Tensor> {
  const tied = new Set(model.tiedWeightKeys);
  return new Map([...model.stateDict()].filter(([key]) => !tied.has(key)));
}

/**
 * Writes config.json and the weights (model.safetensors, pytorch_model.bin, or both) into dir
 * through updateDirectoryAtomicSync: everything is staged and flushed beside dir, a new dir
 * appears in one rename, an existing one gets each file by rename (weights first, config.json
 * last) and loses the weight files of the formats not written, so no stale weights are left
 * behind. Other files in dir (tokenizer files) are kept. Concurrent saves into one directory
 * never fail on each other and leave only complete files.
 */
export function savePretrained(model: PreTrainedModule, dir: string, options: { format?: SaveFormat } = {}): void {
  const format = options.format ?? 'safetensors';
  if (!['safetensors', 'bin', 'both'].includes(format)) throw new Error(`savePretrained: format must be 'safetensors', 'bin' or 'both', got ${JSON.stringify(format)}`);
  const target = path.resolve(dir);
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) throw new Error(`savePretrained: ${target} exists and is not a directory`);
  const written: string[] = [];
  updateDirectoryAtomicSync(target, (staging) => {
    const tensors = checkpointTensors(model);
    if (format === 'safetensors' || format === 'both') {
      const entries = new Map([...tensors].map(([key, t]) => [key, toSafetensorsSource(t, key)] as const));
      writeSafetensors(path.join(staging, SAFETENSORS_NAME), entries, { format: 'pt' });
      written.push(SAFETENSORS_NAME);
    }
    if (format === 'bin' || format === 'both') {
      saveTensors(path.join(staging, PYTORCH_NAME), tensors);
      written.push(PYTORCH_NAME);
    }
    const json = configToJson(model.config, model.architecture);
    fs.writeFileSync(path.join(staging, CONFIG_NAME), `${JSON.stringify(json, null, 2)}\n`);
    written.push(CONFIG_NAME);
    return written;
  }, {
    beforeMerge: (existing) => {
      for (const stale of [SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME]) {
        if (!written.includes(stale)) removeWeights(existing, stale);
      }
    },
  });
}

/** Removes a weight file, or an index and the shards it lists. */
function removeWeights(dir: string, name: string): void {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return;
  if (name.endsWith('.index.json')) {
    try {
      const index = JSON.parse(fs.readFileSync(file, 'utf8')) as { weight_map?: Record<string, string> };
      for (const shard of new Set(Object.values(index.weight_map ?? {}))) {
        if (typeof shard === 'string' && shard === path.basename(shard)) fs.rmSync(path.join(dir, shard), { force: true });
      }
    } catch {
      // an unreadable index: remove it alone
    }
  }
  fs.rmSync(file, { force: true });
}

// ---- loading -----------------------------------------------------------------------------------

export function readConfig(dir: string): ModelConfig {
  const file = path.join(dir, CONFIG_NAME);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${CONFIG_NAME} (not a model directory?)`);
  const json = readJsonFile(file) as Record<string, unknown>;
  const modelType = json && typeof json === 'object' ? json.model_type : undefined;
  if (modelType === 'deberta-v2') return parseDebertaConfig(json, file);
  if (modelType === 'roberta') return parseRobertaConfig(json, file);
  throw new ConfigError(file, [{ key: 'model_type', message: `must be "deberta-v2" or "roberta", got ${JSON.stringify(modelType)}` }]);
}

/**
 * Every tensor of the checkpoint in dir: safetensors preferred, then pytorch_model.bin (single or
 * sharded). Tensors are made one at a time (one tensor's bytes in flight, whatever the size); on
 * any failure every tensor already made is freed, so a bad shard leaks nothing.
 */
export function readCheckpoint(dir: string): { tensors: Map<string, Tensor>; file: string } {
  const single = path.join(dir, SAFETENSORS_NAME);
  const shardedIndex = path.join(dir, SAFETENSORS_INDEX_NAME);
  if (fs.existsSync(single) || fs.existsSync(shardedIndex)) {
    const file = fs.existsSync(single) ? single : shardedIndex;
    const entries = file === single ? iterateSafetensors(single) : iterateShardedSafetensors(dir);
    return { tensors: collectFreeingOnError(function* () {
      for (const [name, entry] of entries) yield [[name, fromSafetensorsEntry(entry, name, file)]];
    }), file };
  }
  const bin = path.join(dir, PYTORCH_NAME);
  if (fs.existsSync(bin)) return { tensors: loadTensors(bin), file: bin };
  const binIndex = path.join(dir, PYTORCH_INDEX_NAME);
  if (fs.existsSync(binIndex)) {
    const index = readJsonFile(binIndex) as { weight_map?: Record<string, string> };
    if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) {
      throw new Error(`${binIndex}: "weight_map" must be an object of tensor name -> shard file`);
    }
    const shards = [...new Set(Object.values(index.weight_map))];
    for (const shard of shards) {
      if (typeof shard !== 'string' || shard !== path.basename(shard) || shard === '' || shard === '.' || shard === '..') {
        throw new Error(`${binIndex}: shard ${JSON.stringify(shard)} must be a file name in ${dir}`);
      }
    }
    return { tensors: collectFreeingOnError(function* () {
      for (const shard of shards) yield loadTensors(path.join(dir, shard));
    }), file: binIndex };
  }
  throw new Error(`${dir}: no weights (looked for ${SAFETENSORS_NAME}, ${SAFETENSORS_INDEX_NAME}, ${PYTORCH_NAME}, ${PYTORCH_INDEX_NAME})`);
}

/** Gathers named tensors from batches; if producing any batch throws, frees all gathered so far. */
function collectFreeingOnError(batches: () => Iterable<Iterable<[string, Tensor]>>): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  try {
    for (const batch of batches()) {
      for (const [name, t] of batch) {
        // A name given twice (in two shards) would orphan the first tensor: free it.
        tensors.get(name)?.dispose();
        tensors.set(name, t);
      }
    }
  } catch (error) {
    dispose([...tensors.values()]);
    throw error;
  }
  return tensors;
}

export interface LoadingInfo extends LoadStateDictResult {
  /** The weights file read. */
  file: string;
  architecture: string;
  /** Checkpoint keys dropped as HF drops them (position_ids buffers, another head's weights...). */
  ignored: string[];
  /** Head parameters absent from a base-model checkpoint: they keep their fresh initialisation. */
  newlyInitialized: string[];
}

// Keys HF itself skips without complaint: the position_ids buffer older transformers saved, and
// each class's _keys_to_ignore_on_load_unexpected (DeBERTa V3 checkpoints carry absolute
// position embeddings and an RTD head `mask_predictions` that DebertaV2 models do not use).
const IGNORED_UNEXPECTED: Record<string, RegExp[]> = {
  'deberta-v2': [/(^|\.)position_ids$/, /position_embeddings/, /^mask_predictions\./],
  roberta: [/(^|\.)position_ids$/, /(^|\.)token_type_ids$/, /(^|^roberta\.)pooler\./],
};

/**
 * Adapts checkpoint keys to the model as HF does: a head model loading a base checkpoint
 * prefixes its keys with `deberta.` / `roberta.`; a base model loading a head checkpoint keeps
 * the prefixed keys without the prefix and drops the head's.
 */
function matchPrefix(model: PreTrainedModule, keys: string[]): { rename: Map<string, string>; dropped: string[] } {
  const prefix = `${model.baseModelPrefix}.`;
  const modelKeys = new Set(model.stateDict().keys());
  const modelHasPrefix = [...modelKeys].some((key) => key.startsWith(prefix));
  const checkpointHasPrefix = keys.some((key) => key.startsWith(prefix));
  const rename = new Map<string, string>();
  const dropped: string[] = [];
  for (const key of keys) {
    if (modelHasPrefix && !checkpointHasPrefix) rename.set(key, modelKeys.has(prefix + key) ? prefix + key : key);
    else if (!modelHasPrefix && checkpointHasPrefix) {
      if (key.startsWith(prefix)) rename.set(key, key.slice(prefix.length));
      else dropped.push(key);
    } else rename.set(key, key);
  }
  return { rename, dropped };
}

export interface FromPretrainedOptions extends ModelInitOptions {
  /** The class to build (e.g. 'DebertaV2Model' to take the encoder of a masked-LM checkpoint); default: config.json's architectures[0]. */
  architecture?: string;
  /** Throw on missing, unexpected or mismatched keys (other than those HF tolerates). Default true. */
  strict?: boolean;
}

/** Loads a model directory written by camemberta or by transformers' save_pretrained. */
export function loadPretrained(dir: string, options: FromPretrainedOptions = {}): { model: PreTrainedModule; info: LoadingInfo } {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: no such model directory`);
  const config = readConfig(dir);
  const named = options.architecture ?? config.architectures?.find((name) => name in ARCHITECTURES);
  if (options.architecture === undefined && config.architectures?.length && named === undefined) {
    throw new Error(`${path.join(dir, CONFIG_NAME)}: architectures ${JSON.stringify(config.architectures)} names no class camemberta implements ` +
      `(known: ${Object.keys(ARCHITECTURES).join(', ')}); pass { architecture } to choose one`);
  }
  const architecture = named ?? BASE_ARCHITECTURE[config.model_type];
  const model = createModel(architecture, config, { ...options, init: options.init ?? 'normal' });
  let checkpoint: { tensors: Map<string, Tensor>; file: string };
  try {
    checkpoint = readCheckpoint(dir);
  } catch (error) {
    model.dispose();
    throw error;
  }
  const { tensors, file } = checkpoint;
  try {
    const { rename, dropped } = matchPrefix(model, [...tensors.keys()]);
    const ignorable = IGNORED_UNEXPECTED[config.model_type];
    const modelKeys = new Set(model.stateDict().keys());
    const dict = new Map<string, Tensor>();
    const ignored = [...dropped];
    for (const [key, t] of tensors) {
      const target = rename.get(key);
      if (target === undefined) continue;
      if (!modelKeys.has(target) && ignorable.some((pattern) => pattern.test(key))) ignored.push(key);
      else dict.set(target, t);
    }
    const result = model.loadStateDict(dict, { strict: false });
    // A head missing from a base checkpoint is initialised afresh, as HF does for fine-tuning.
    const basePrefix = `${model.baseModelPrefix}.`;
    const loadedBaseOnly = ![...dict.keys()].some((key) => !key.startsWith(basePrefix)) && [...dict.keys()].length > 0;
    const newlyInitialized = loadedBaseOnly ? result.missing.filter((key) => !key.startsWith(basePrefix)) : [];
    const missing = result.missing.filter((key) => !newlyInitialized.includes(key));
    const info: LoadingInfo = { ...result, missing, file, architecture, ignored, newlyInitialized };
    if ((options.strict ?? true) && (missing.length || result.unexpected.length || result.mismatched.length)) {
      throw new StateDictError(info, `${file} -> ${architecture}`);
    }
    return { model, info };
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    dispose([...tensors.values()]);
  }
}

/** loadPretrained without the loading report. */
export function fromPretrained(dir: string, options: FromPretrainedOptions = {}): PreTrainedModule {
  return loadPretrained(dir, options).model;
}

export { describeResult };
