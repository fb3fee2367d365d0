// From a training config and its tokenizer to model configs: the preset, the user's HF fields on
// top, vocab_size from the tokenizer when left to "auto", the special-token ids from the
// tokenizer, and the generator from width/depth ratios. Problems are TrainConfigErrors naming the key.
import { DebertaV2Config, parseDebertaConfig } from '../models/deberta/config';
import { RobertaConfig, parseRobertaConfig } from '../models/roberta/config';
import { ConfigError } from '../models/config-json';
import {
  DEBERTA_V3_SETTINGS, camembertaBaseDiscriminator, generatorFromDiscriminator, tinyDebertaConfig,
} from '../models/presets';
import type { SpecialTokenIds } from '../tokenizer/index';
import { DebertaV2ForMaskedLM } from '../models/deberta/modeling';
import { RobertaForMaskedLM } from '../models/roberta/modeling';
import type { ModelInitOptions } from '../models/pretrained-module';
import { TrainConfig, TrainConfigError, ConfigProblem } from './config';
import { ElectraModel } from './electra';

export interface TokenizerFacts {
  /** Ids the embedding table must hold (pieces + added tokens). */
  vocabSize: number;
  ids: SpecialTokenIds;
}

export interface ModelConfigs {
  /** The discriminator (electra) or the only model (mlm). */
  main: DebertaV2Config | RobertaConfig;
  generator: DebertaV2Config | null;
}

const DEBERTA_PRESETS: Record<string, Record<string, unknown>> = {
  tiny: { ...tinyDebertaConfig() },
  small: { ...DEBERTA_V3_SETTINGS, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024, embedding_size: 256, conv_kernel_size: 3, conv_act: 'gelu' },
  'camemberta-base': { ...camembertaBaseDiscriminator() },
};

const ROBERTA_BASE = {
  hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  hidden_act: 'gelu', hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, type_vocab_size: 1,
  layer_norm_eps: 1e-5, initializer_range: 0.02,
};
const ROBERTA_PRESETS: Record<string, Record<string, unknown>> = {
  tiny: { ...ROBERTA_BASE, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 256 },
  small: { ...ROBERTA_BASE, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024 },
  'camembert-base': ROBERTA_BASE,
};

/** The tokenizer's size rounded up to a multiple of 8 (CamemBERTa: 32001 -> 32008). */
export function paddedVocabSize(tokenizerVocabSize: number): number {
  return Math.ceil(tokenizerVocabSize / 8) * 8;
}

/**
 * A preset's fields without those derived from its width (head size, pooler and embedding width):
 * overriding hidden_size must not keep the preset's 64-wide heads.
 */
function presetFields(fields: Record<string, unknown>): Record<string, unknown> {
  const { extra = {}, attention_head_size: _h, pooler_hidden_size: _p, embedding_size: _e, ...rest } = fields as Record<string, unknown> & { extra?: Record<string, unknown> };
  return { ...(extra as Record<string, unknown>), ...rest };
}

function parseOrProblems<T>(parse: () => T, key: string, problems: ConfigProblem[]): T | null {
  try {
    const config = parse();
    const unknown = Object.keys((config as { extra: Record<string, unknown> }).extra);
    for (const name of unknown) problems.push({ key: `${key}.${name}`, message: 'unknown model config key' });
    return config;
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const p of error.problems) problems.push({ key: `${key}.${p.key}`, message: p.message });
      return null;
    }
    throw error;
  }
}

/** Model configs for `config`; `source` names the config file in errors. */
export function buildModelConfigs(config: TrainConfig, tokenizer: TokenizerFacts, source: string): ModelConfigs {
  const problems: ConfigProblem[] = [];
  const user = { ...config.model.config };
  const seqLength = config.data.seq_length;
  const vocabKey = 'model.config.vocab_size';
  if (user.vocab_size === undefined || user.vocab_size === 'auto') user.vocab_size = paddedVocabSize(tokenizer.vocabSize);
  const vocab = user.vocab_size;
  if (typeof vocab === 'number' && Number.isInteger(vocab) && vocab < tokenizer.vocabSize) {
    problems.push({ key: vocabKey, message: `${vocab} rows cannot hold the tokenizer's ${tokenizer.vocabSize} ids (largest id ${tokenizer.vocabSize - 1}); use "auto" or at least ${tokenizer.vocabSize}` });
  }
  const tokenFields = { pad_token_id: tokenizer.ids.pad, bos_token_id: tokenizer.ids.cls, eos_token_id: tokenizer.ids.sep };
  for (const [key, value] of Object.entries(tokenFields)) {
    if (user[key] !== undefined && user[key] !== value) {
      problems.push({ key: `model.config.${key}`, message: `${JSON.stringify(user[key])} differs from the tokenizer's ${value}` });
    }
  }

  let main: DebertaV2Config | RobertaConfig | null;
  let generator: DebertaV2Config | null = null;
  if (config.model.type === 'deberta-v2') {
    const preset = DEBERTA_PRESETS[config.model.preset];
    if (!preset) problems.push({ key: 'model.preset', message: `${config.model.preset} is not a deberta-v2 preset (${Object.keys(DEBERTA_PRESETS).join(', ')})` });
    const architecture = config.objective === 'mlm' ? 'DebertaV2ForMaskedLM' : 'DebertaV2Model';
    main = parseOrProblems(() => parseDebertaConfig({ ...presetFields(preset ?? {}), architectures: [architecture], ...tokenFields, ...user }, source), 'model.config', problems);
    const deberta = main as DebertaV2Config | null;
    if (deberta && deberta.attention_head_size * deberta.num_attention_heads !== deberta.hidden_size) {
      // transformers' attention output is a hidden -> hidden Linear: heads x head size must be the width.
      problems.push({ key: 'model.config.attention_head_size', message: `${deberta.attention_head_size} x ${deberta.num_attention_heads} heads != hidden_size ${deberta.hidden_size}` });
    }
    if (main && main.max_position_embeddings < seqLength) {
      problems.push({ key: 'data.seq_length', message: `${seqLength} exceeds the model's max_position_embeddings ${main.max_position_embeddings}` });
    }
    if (main && config.objective === 'electra') {
      const { hidden_ratio: hiddenRatio, layer_ratio: layerRatio } = config.model.generator;
      const base = main as DebertaV2Config;
      const derived = parseOrProblems(() => generatorFromDiscriminator(base, { hiddenRatio, layerRatio }), 'model.generator', problems);
      if (derived) {
        const { extra, ...fields } = derived;
        generator = parseOrProblems(() => parseDebertaConfig({ ...extra, ...fields, ...config.model.generator.config }, source), 'model.generator.config', problems);
      }
      if (generator && config.electra.embedding_sharing !== 'none') {
        for (const key of ['vocab_size', 'embedding_size'] as const) {
          if (generator[key] !== base[key]) {
            problems.push({ key: `model.generator.config.${key}`, message: `${generator[key]} differs from the discriminator's ${base[key]}: embedding sharing "${config.electra.embedding_sharing}" needs one table` });
          }
        }
      }
    }
  } else {
    const preset = ROBERTA_PRESETS[config.model.preset];
    if (!preset) problems.push({ key: 'model.preset', message: `${config.model.preset} is not a roberta preset (${Object.keys(ROBERTA_PRESETS).join(', ')})` });
    // RoBERTa numbers positions from pad_token_id + 1.
    const positions = { max_position_embeddings: seqLength + tokenizer.ids.pad + 1 };
    main = parseOrProblems(() => parseRobertaConfig({ ...(preset ?? {}), ...positions, architectures: ['RobertaForMaskedLM'], ...tokenFields, ...user }, source), 'model.config', problems);
  }
  if (problems.length || !main) throw new TrainConfigError(source, problems);
  return { main, generator };
}

/** The module a run trains: the ELECTRA pair, or one masked-LM model. */
export function createPretrainingModel(config: TrainConfig, configs: ModelConfigs, options: ModelInitOptions = {}): ElectraModel | DebertaV2ForMaskedLM | RobertaForMaskedLM {
  if (config.objective === 'electra') return new ElectraModel(configs.generator!, configs.main as DebertaV2Config, config.electra.embedding_sharing, options);
  return configs.main.model_type === 'deberta-v2'
    ? new DebertaV2ForMaskedLM(configs.main as DebertaV2Config, options)
    : new RobertaForMaskedLM(configs.main as RobertaConfig, options);
}
