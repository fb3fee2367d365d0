// RobertaConfig: the fields transformers' RobertaConfig (5.18) declares and modeling_roberta.py
// reads, with HF's names and defaults. Only the encoder (RobertaModel / RobertaForMaskedLM) is
// supported, so decoder settings must stay off.
import { ConfigReader, EncoderFields, SIZE_LIMITS, encoderConfigToJson, readEncoderFields, readJsonFile } from '../config-json';

/** The shared fields (EncoderFields) plus those of Roberta. */
export interface RobertaConfig extends EncoderFields {
  model_type: 'roberta';

  type_vocab_size: number;

  /**
   * Also the padding_idx of word and position embeddings, and the base of position ids: positions
   * count from pad_token_id + 1, so sequences hold at most max_position_embeddings - pad_token_id - 1 tokens.
   */
  pad_token_id: number;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  use_cache: boolean;
  /** Classification-head dropout (HF: hidden_dropout_prob when null). */
  classifier_dropout: number | null;
  is_decoder: boolean;
  add_cross_attention: boolean;

  extra: Record<string, unknown>;
}

export function parseRobertaConfig(json: unknown, source = '<config>'): RobertaConfig {
  const r = new ConfigReader(json, source);
  const shared = readEncoderFields(r, {
    model_type: 'roberta', vocab_size: 50265, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
    intermediate_size: 3072, layer_norm_eps: 1e-12,
  });
  const { vocab_size, hidden_size, max_position_embeddings } = shared;
  r.matrix('vocab_size', vocab_size, hidden_size, 'embeddings.word_embeddings');
  const padRaw = r.tokenId('pad_token_id', 1);
  if (padRaw === null) r.problem('pad_token_id', 'RoBERTa needs a pad token id: it numbers positions from it');
  const pad_token_id = padRaw ?? 1;
  if (pad_token_id >= vocab_size) r.problem('pad_token_id', `${pad_token_id} is outside the vocabulary (vocab_size ${vocab_size})`);
  if (pad_token_id + 2 > max_position_embeddings) {
    r.problem('max_position_embeddings', `${max_position_embeddings} leaves no position after pad_token_id ${pad_token_id} (positions start at pad_token_id + 1)`);
  }
  const is_decoder = r.bool('is_decoder', false);
  if (is_decoder) r.problem('is_decoder', 'only the encoder is supported');
  const add_cross_attention = r.bool('add_cross_attention', false);
  if (add_cross_attention) r.problem('add_cross_attention', 'only the encoder is supported');

  const config: RobertaConfig = {
    model_type: 'roberta',
    architectures: shared.architectures,
    vocab_size,
    hidden_size,
    num_hidden_layers: shared.num_hidden_layers,
    num_attention_heads: shared.num_attention_heads,
    intermediate_size: shared.intermediate_size,
    hidden_act: shared.hidden_act,
    hidden_dropout_prob: shared.hidden_dropout_prob,
    attention_probs_dropout_prob: shared.attention_probs_dropout_prob,
    max_position_embeddings,
    // token_type_embeddings always exists and type id 0 is looked up, so at least one row.
    type_vocab_size: r.int('type_vocab_size', 2, { min: 1, max: SIZE_LIMITS.type_vocab_size }),
    initializer_range: shared.initializer_range,
    layer_norm_eps: shared.layer_norm_eps,
    pad_token_id,
    bos_token_id: r.tokenId('bos_token_id', 0),
    eos_token_id: r.tokenIds('eos_token_id', 2),
    use_cache: r.bool('use_cache', true),
    classifier_dropout: r.nullableProbability('classifier_dropout'),
    is_decoder,
    add_cross_attention,
    tie_word_embeddings: shared.tie_word_embeddings,
    dtype: shared.dtype,
    extra: {},
  };
  config.extra = r.extras();
  r.finish();
  return config;
}

export function readRobertaConfig(file: string): RobertaConfig {
  return parseRobertaConfig(readJsonFile(file), file);
}

/** The longest input: position ids run from pad_token_id + 1 to max_position_embeddings - 1. */
export function robertaMaxSequenceLength(config: RobertaConfig): number {
  return config.max_position_embeddings - config.pad_token_id - 1;
}

export function robertaConfigToJson(config: RobertaConfig): Record<string, unknown> {
  return encoderConfigToJson(config, parseRobertaConfig, '<robertaConfigToJson>');
}
