// Ready-made configs: CamemBERTa-base (SPEC section 1), the ELECTRA generator derived from a
// discriminator by width and depth ratios, and a tiny config for demos and fast tests.
import { DebertaV2Config, parseDebertaConfig } from './deberta/config';

/** DeBERTa-V3 settings shared by discriminator and generator; HF's defaults differ, so explicit. */
export const DEBERTA_V3_SETTINGS = {
  model_type: 'deberta-v2',
  relative_attention: true,
  position_biased_input: false,
  pos_att_type: ['p2c', 'c2p'],
  max_relative_positions: -1,
  position_buckets: 256,
  norm_rel_ebd: 'layer_norm',
  share_att_key: true,
  type_vocab_size: 0,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-7,
  max_position_embeddings: 512,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  initializer_range: 0.02,
  legacy: true,
} as const;

/** Fields a caller may override on a preset (token ids, vocabulary size, dropout...). */
export type DebertaOverrides = Partial<Omit<DebertaV2Config, 'model_type'>>;

function build(fields: Record<string, unknown>, overrides: DebertaOverrides, name: string): DebertaV2Config {
  const { extra = {}, ...rest } = overrides;
  return parseDebertaConfig({ ...extra, ...fields, ...rest }, name);
}

/**
 * The released CamemBERTa-base discriminator (HF class DebertaV2Model): 768 / 12 layers / 12 heads
 * / FFN 3072, vocabulary 32008, conv layer k=3 with GELU. pad_token_id 0 is CamemBERTa's (<unk>,
 * the pad id of its pretraining data); take real ids from the tokenizer via `overrides`.
 */
export function camembertaBaseDiscriminator(overrides: DebertaOverrides = {}): DebertaV2Config {
  return build({
    ...DEBERTA_V3_SETTINGS,
    architectures: ['DebertaV2Model'],
    vocab_size: 32008,
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    embedding_size: 768,
    conv_kernel_size: 3,
    conv_act: 'gelu',
    pad_token_id: 0,
  }, overrides, 'camembertaBaseDiscriminator');
}

export interface GeneratorRatios {
  /** Generator width / discriminator width before rounding up to a multiple of the head size. */
  hiddenRatio: number;
  /** Generator depth / discriminator depth (rounded to the nearest layer). */
  layerRatio: number;
}

/** CamemBERTa: a third of the width, full depth. */
export const CAMEMBERTA_GENERATOR_RATIOS: GeneratorRatios = { hiddenRatio: 1 / 3, layerRatio: 1 };
/** Microsoft's DeBERTa-V3: full width, half depth. */
export const MICROSOFT_V3_GENERATOR_RATIOS: GeneratorRatios = { hiddenRatio: 1, layerRatio: 0.5 };

/**
 * The ELECTRA generator for `discriminator` (HF class DebertaV2ForMaskedLM, legacy head):
 * hidden = discriminator hidden x hiddenRatio rounded up to a multiple of the discriminator's head
 * size, heads = hidden / head size, FFN = 4 x hidden, layers = round(layers x layerRatio). The
 * word embeddings keep the discriminator's embedding_size (they are shared under GDES), so a
 * narrower generator gets embeddings.embed_proj.
 */
export function generatorFromDiscriminator(discriminator: DebertaV2Config, ratios: GeneratorRatios, overrides: DebertaOverrides = {}): DebertaV2Config {
  const { hiddenRatio, layerRatio } = ratios;
  for (const [name, ratio] of Object.entries(ratios)) {
    if (!(Number.isFinite(ratio) && ratio > 0 && ratio <= 1)) {
      throw new RangeError(`generatorFromDiscriminator: ${name} must be in (0, 1], got ${ratio}`);
    }
  }
  const headSize = discriminator.attention_head_size;
  // The epsilon keeps 768 x (1/3) = 255.99999... or 256.0000...1 at 256, not 320.
  const hidden = Math.ceil((discriminator.hidden_size * hiddenRatio) / headSize - 1e-9) * headSize;
  const layers = Math.max(1, Math.round(discriminator.num_hidden_layers * layerRatio));
  const { extra, ...fields } = discriminator;
  return build({
    ...extra,
    ...fields,
    architectures: ['DebertaV2ForMaskedLM'],
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: hidden / headSize,
    attention_head_size: headSize,
    intermediate_size: 4 * hidden,
    embedding_size: discriminator.embedding_size,
    pooler_hidden_size: hidden,
    legacy: true,
  }, overrides, 'generatorFromDiscriminator');
}

/** CamemBERTa-base's generator: 256 hidden, 12 layers, 4 heads, FFN 1024, embedding_size 768. */
export function camembertaBaseGenerator(overrides: DebertaOverrides = {}): DebertaV2Config {
  return generatorFromDiscriminator(camembertaBaseDiscriminator(), CAMEMBERTA_GENERATOR_RATIOS, overrides);
}

/**
 * A tiny DeBERTa-V3 (64 hidden, 2 layers, 2 heads, sequences up to 128) for demos and fast
 * tests; 32 buckets so that sequences longer than 17 tokens already reach the log buckets.
 */
export function tinyDebertaConfig(overrides: DebertaOverrides = {}): DebertaV2Config {
  return build({
    ...DEBERTA_V3_SETTINGS,
    architectures: ['DebertaV2Model'],
    vocab_size: 128,
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 256,
    embedding_size: 64,
    max_position_embeddings: 128,
    position_buckets: 32,
    conv_kernel_size: 3,
    conv_act: 'gelu',
    pad_token_id: 0,
  }, overrides, 'tinyDebertaConfig');
}
