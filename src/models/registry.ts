// HF architecture names -> our classes, for fromPretrained and the CLI.
import { ModelInitOptions, ModelConfig, PreTrainedModule } from './pretrained-module';
import { DebertaV2Config } from './deberta/config';
import { RobertaConfig } from './roberta/config';
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

/** The base class of each model type: used when config.json names no architecture we know. */
export const BASE_ARCHITECTURE: Record<ModelType, string> = { 'deberta-v2': 'DebertaV2Model', roberta: 'RobertaModel' };

/** Builds the named architecture; the error lists the known ones. */
export function createModel(architecture: string, config: ModelConfig, options: ModelInitOptions = {}): PreTrainedModule {
  const entry = ARCHITECTURES[architecture];
  if (!entry) throw new Error(`unknown architecture ${JSON.stringify(architecture)} (known: ${Object.keys(ARCHITECTURES).join(', ')})`);
  if (entry.modelType !== config.model_type) {
    throw new Error(`architecture ${architecture} is a ${entry.modelType} model but the config is model_type ${JSON.stringify(config.model_type)}`);
  }
  return entry.create(config, options);
}
