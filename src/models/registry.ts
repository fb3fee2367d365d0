// What transformers' Auto mappings hold: model_type -> config parser and writer, base class and
// the checkpoint keys its loader tolerates; architecture name -> class. io/pretrained and the
// CLI ask here and know no model type themselves, so a new model is registered in one place.
import { ModelInitOptions, ModelConfig, PreTrainedModule } from './pretrained-module';
import { DebertaV2Config, parseDebertaConfig, debertaConfigToJson } from './deberta/config';
import { RobertaConfig, parseRobertaConfig, robertaConfigToJson } from './roberta/config';
import { ConfigError, describeValue } from './config-json';
import { DebertaV2Model, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification } from './deberta/modeling';
import { DebertaV2ForReplacedTokenDetection } from './deberta/rtd';
import { RobertaModel, RobertaForMaskedLM } from './roberta/modeling';

export type ModelType = ModelConfig['model_type'];

interface Architecture {
  modelType: ModelType;
  create(config: ModelConfig, options: ModelInitOptions): PreTrainedModule;
}

export const ARCHITECTURES: Record<string, Architecture> = {
  DebertaV2Model: { modelType: 'deberta-v2', create: (c, o) => new DebertaV2Model(c as DebertaV2Config, o) },
  DebertaV2ForMaskedLM: { modelType: 'deberta-v2', create: (c, o) => new DebertaV2ForMaskedLM(c as DebertaV2Config, o) },
  DebertaV2ForSequenceClassification: { modelType: 'deberta-v2', create: (c, o) => new DebertaV2ForSequenceClassification(c as DebertaV2Config, o) },
  DebertaV2ForTokenClassification: { modelType: 'deberta-v2', create: (c, o) => new DebertaV2ForTokenClassification(c as DebertaV2Config, o) },
  DebertaV2ForReplacedTokenDetection: { modelType: 'deberta-v2', create: (c, o) => new DebertaV2ForReplacedTokenDetection(c as DebertaV2Config, o) },
  RobertaModel: { modelType: 'roberta', create: (c, o) => new RobertaModel(c as RobertaConfig, o) },
  RobertaForMaskedLM: { modelType: 'roberta', create: (c, o) => new RobertaForMaskedLM(c as RobertaConfig, o) },
};

interface ModelTypeEntry {
  parse(json: unknown, source: string): ModelConfig;
  toJson(config: ModelConfig): Record<string, unknown>;
  /** The base class: used when config.json names no architecture we know. */
  baseArchitecture: string;
  /**
   * Checkpoint keys HF itself skips without complaint: the position_ids buffer older
   * transformers saved, and each class's _keys_to_ignore_on_load_unexpected (DeBERTa V3
   * checkpoints carry absolute position embeddings and an RTD head `mask_predictions` that
   * DebertaV2 models do not use).
   */
  ignoredUnexpected: RegExp[];
}

export const MODEL_TYPES: Record<ModelType, ModelTypeEntry> = {
  'deberta-v2': {
    parse: parseDebertaConfig,
    toJson: (config) => debertaConfigToJson(config as DebertaV2Config),
    baseArchitecture: 'DebertaV2Model',
    ignoredUnexpected: [/(^|\.)position_ids$/, /position_embeddings/, /^mask_predictions\./],
  },
  roberta: {
    parse: parseRobertaConfig,
    toJson: (config) => robertaConfigToJson(config as RobertaConfig),
    baseArchitecture: 'RobertaModel',
    ignoredUnexpected: [/(^|\.)position_ids$/, /(^|\.)token_type_ids$/, /(^|^roberta\.)pooler\./],
  },
};

export const BASE_ARCHITECTURE = Object.fromEntries(
  Object.entries(MODEL_TYPES).map(([type, entry]) => [type, entry.baseArchitecture]),
) as Record<ModelType, string>;

/** A parsed config.json of any registered model type; `source` (the file) is named in errors. */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  const modelType = json && typeof json === 'object' ? (json as Record<string, unknown>).model_type : undefined;
  const entry = typeof modelType === 'string' && Object.prototype.hasOwnProperty.call(MODEL_TYPES, modelType)
    ? MODEL_TYPES[modelType as ModelType] : undefined;
  if (!entry) {
    const known = Object.keys(MODEL_TYPES).map((type) => JSON.stringify(type)).join(' or ');
    throw new ConfigError(source, [{ key: 'model_type', message: `must be ${known}, got ${describeValue(modelType)}` }]);
  }
  return entry.parse(json, source);
}

/** config.json content for `config`, with `architecture` as its architectures. */
export function modelConfigToJson(config: ModelConfig, architecture: string): Record<string, unknown> {
  return MODEL_TYPES[config.model_type].toJson({ ...config, architectures: [architecture] });
}

/** Builds the named architecture; the error lists the known ones. */
export function createModel(architecture: string, config: ModelConfig, options: ModelInitOptions = {}): PreTrainedModule {
  const entry = ARCHITECTURES[architecture];
  if (!entry) throw new Error(`unknown architecture ${JSON.stringify(architecture)} (known: ${Object.keys(ARCHITECTURES).join(', ')})`);
  if (entry.modelType !== config.model_type) {
    throw new Error(`architecture ${architecture} is a ${entry.modelType} model but the config is model_type ${JSON.stringify(config.model_type)}`);
  }
  return entry.create(config, options);
}
