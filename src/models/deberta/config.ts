// DebertaV2Config: every field transformers' DebertaV2Config (5.18) declares plus every field
// modeling_deberta_v2.py reads with getattr(config, name, default). Field names are HF's, so the
// object maps 1:1 onto config.json. Absent fields take the default HF's *modeling code* uses
// (e.g. share_att_key false, position_buckets -1, norm_rel_ebd "none", no conv layer) — not
// CamemBERTa's settings; those live in src/models/presets.ts and are written out explicitly.
import { Activation, ConfigReader, EncoderFields, SIZE_LIMITS, describeValue, encoderConfigToJson, readEncoderFields, readJsonFile } from '../config-json';

export type PositionAttentionType = 'c2p' | 'p2c';

/** The shared fields (EncoderFields) plus those of DebertaV2. */
export interface DebertaV2Config extends EncoderFields {
  model_type: 'deberta-v2';

  /** 0: no token_type_embeddings. */
  type_vocab_size: number;

  relative_attention: boolean;
  /** < 1 means max_position_embeddings (see debertaDerived). */
  max_relative_positions: number;
  /** > 0: log-bucketed relative positions with this many buckets per side; <= 0: none. */
  position_buckets: number;
  /** Which disentangled terms are added to content-to-content attention. */
  pos_att_type: PositionAttentionType[];
  /** Lowercased '|'-separated list; "layer_norm" in it applies encoder.LayerNorm to rel_embeddings. */
  norm_rel_ebd: string;
  /** Relative embeddings projected by the content query/key projections (V3) instead of pos_*_proj. */
  share_att_key: boolean;
  /** Absolute position embeddings added to the word embeddings (V2 yes, V3 no). */
  position_biased_input: boolean;
  /** Word-embedding width; embeddings.embed_proj maps it to hidden_size when they differ. */
  embedding_size: number;
  attention_head_size: number;

  /** 0: no encoder.conv; else the kernel of the Conv1d applied after layer 0 (odd). */
  conv_kernel_size: number;
  conv_act: Activation;
  conv_groups: number;

  pooler_dropout: number;
  pooler_hidden_act: Activation;
  pooler_hidden_size: number;
  /** Classification-head dropout (HF: hidden_dropout_prob when null). */
  cls_dropout: number | null;

  pad_token_id: number | null;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  /** true: the `cls.predictions` masked-LM head (the one CamemBERTa's generator uses). */
  legacy: boolean;

  /** Keys we do not interpret (id2label, transformers_version...), written back unchanged. */
  extra: Record<string, unknown>;
}

/**
 * Validates `json` (a parsed config.json) and fills HF's defaults. `source` (usually the file)
 * is named in errors; all problems are reported together in one ConfigError.
 */
export function parseDebertaConfig(json: unknown, source = '<config>'): DebertaV2Config {
  const r = new ConfigReader(json, source);
  const shared = readEncoderFields(r, {
    model_type: 'deberta-v2', vocab_size: 128100, hidden_size: 1536, num_hidden_layers: 24, num_attention_heads: 24,
    intermediate_size: 6144, layer_norm_eps: 1e-7,
  });
  const { vocab_size, hidden_size, num_attention_heads, max_position_embeddings } = shared;

  // Old configs write "p2c|c2p" (any case); HF lowercases and splits a string, keeps a list as is.
  const rawPosAttType = r.raw('pos_att_type');
  let pos_att_type: PositionAttentionType[] = [];
  if (rawPosAttType !== undefined && rawPosAttType !== null) {
    const items = typeof rawPosAttType === 'string'
      ? rawPosAttType.toLowerCase().split('|').map((s) => s.trim()).filter((s) => s !== '')
      : rawPosAttType;
    if (!Array.isArray(items) || !items.every((s) => s === 'c2p' || s === 'p2c')) {
      r.problem('pos_att_type', `must be a list of "c2p"/"p2c" or a "p2c|c2p" string, got ${describeValue(rawPosAttType)}`);
    } else if (new Set(items).size !== items.length) {
      r.problem('pos_att_type', `lists a type twice: ${describeValue(rawPosAttType)}`);
    } else {
      pos_att_type = items as PositionAttentionType[];
    }
  }

  const norm_rel_ebd = r.string('norm_rel_ebd', 'none').toLowerCase();
  for (const part of norm_rel_ebd.split('|').map((s) => s.trim())) {
    if (part !== 'none' && part !== 'layer_norm') {
      r.problem('norm_rel_ebd', `unknown normalisation ${describeValue(part)} (expected "none" or "layer_norm")`);
    }
  }

  const conv_kernel_size = r.int('conv_kernel_size', 0, { min: 0, max: SIZE_LIMITS.conv_kernel_size });
  if (conv_kernel_size > 0 && conv_kernel_size % 2 === 0) {
    // HF pads by (k-1)//2, which keeps the sequence length only for odd kernels.
    r.problem('conv_kernel_size', `must be odd (the convolution pads by (k-1)/2 to keep the length), got ${conv_kernel_size}`);
  }
  const conv_groups = r.int('conv_groups', 1, { min: 1 });
  if (hidden_size % conv_groups !== 0) r.problem('conv_groups', `hidden_size ${hidden_size} is not a multiple of conv_groups ${conv_groups}`);

  const pad_token_id = r.tokenId('pad_token_id', 0);
  if (pad_token_id !== null && pad_token_id >= vocab_size) {
    r.problem('pad_token_id', `${pad_token_id} is outside the vocabulary (vocab_size ${vocab_size})`);
  }
  const embedding_size = r.int('embedding_size', hidden_size, { min: 1, max: SIZE_LIMITS.width });
  r.matrix('vocab_size', vocab_size, embedding_size, 'embeddings.word_embeddings');
  const max_relative_positions = r.int('max_relative_positions', -1, { max: SIZE_LIMITS.positions });
  const position_buckets = r.int('position_buckets', -1, { max: SIZE_LIMITS.positions });
  // encoder.rel_embeddings has 2S rows of hidden_size (S: buckets, else the relative span).
  const span = position_buckets > 0 ? position_buckets : max_relative_positions < 1 ? max_position_embeddings : max_relative_positions;
  r.matrix(position_buckets > 0 ? 'position_buckets' : 'max_relative_positions', 2 * span, hidden_size, 'encoder.rel_embeddings');

  const config: DebertaV2Config = {
    model_type: 'deberta-v2',
    architectures: shared.architectures,
    vocab_size,
    hidden_size,
    num_hidden_layers: shared.num_hidden_layers,
    num_attention_heads,
    intermediate_size: shared.intermediate_size,
    hidden_act: shared.hidden_act,
    hidden_dropout_prob: shared.hidden_dropout_prob,
    attention_probs_dropout_prob: shared.attention_probs_dropout_prob,
    max_position_embeddings,
    type_vocab_size: r.int('type_vocab_size', 0, { min: 0, max: SIZE_LIMITS.type_vocab_size }),
    initializer_range: shared.initializer_range,
    layer_norm_eps: shared.layer_norm_eps,
    relative_attention: r.bool('relative_attention', false),
    max_relative_positions,
    position_buckets,
    pos_att_type,
    norm_rel_ebd,
    share_att_key: r.bool('share_att_key', false),
    position_biased_input: r.bool('position_biased_input', true),
    embedding_size,
    attention_head_size: r.int('attention_head_size', Math.floor(hidden_size / num_attention_heads), { min: 1, max: SIZE_LIMITS.width }),
    conv_kernel_size,
    conv_act: r.activation('conv_act', 'tanh'),
    conv_groups,
    pooler_dropout: r.probability('pooler_dropout', 0),
    pooler_hidden_act: r.activation('pooler_hidden_act', 'gelu'),
    pooler_hidden_size: r.int('pooler_hidden_size', hidden_size, { min: 1, max: SIZE_LIMITS.width }),
    cls_dropout: r.nullableProbability('cls_dropout'),
    pad_token_id,
    bos_token_id: r.tokenId('bos_token_id', null),
    eos_token_id: r.tokenIds('eos_token_id', null),
    legacy: r.bool('legacy', true),
    tie_word_embeddings: shared.tie_word_embeddings,
    dtype: shared.dtype,
    extra: {},
  };
  config.extra = r.extras();
  r.finish();
  return config;
}

export function readDebertaConfig(file: string): DebertaV2Config {
  return parseDebertaConfig(readJsonFile(file), file);
}

/**
 * config.json content with every field written explicitly (HF's defaults differ from V3's, so
 * nothing is left implicit), HF's names, then the unknown keys kept from parsing.
 */
export function debertaConfigToJson(config: DebertaV2Config): Record<string, unknown> {
  return encoderConfigToJson(config, parseDebertaConfig, '<debertaConfigToJson>');
}

/** What the modeling code derives from the config, computed the way HF computes it. */
export interface DebertaDerived {
  attentionHeadSize: number;
  /** num_attention_heads * attention_head_size: width of the Q/K/V projections. */
  allHeadSize: number;
  /** max_relative_positions, or max_position_embeddings when it is < 1. */
  maxRelativePositions: number;
  /** Log buckets in use (position_buckets > 0). */
  bucketed: boolean;
  /** Attention span S: position_buckets when bucketed, else maxRelativePositions. */
  attentionSpan: number;
  /** Rows of encoder.rel_embeddings: 2S. */
  relEmbeddingRows: number;
  /** encoder.LayerNorm exists and normalises rel_embeddings. */
  relEmbeddingLayerNorm: boolean;
  c2p: boolean;
  p2c: boolean;
  /** sqrt(attention_head_size * scaleFactor) divides the scores; scaleFactor = 1 + c2p + p2c. */
  scaleFactor: number;
  /** embeddings.embed_proj exists (embedding_size != hidden_size). */
  embedProjection: boolean;
  positionEmbeddings: boolean;
  tokenTypeEmbeddings: boolean;
  conv: boolean;
  /** pos_key_proj / pos_query_proj exist (relative attention without shared keys). */
  separatePositionKey: boolean;
  separatePositionQuery: boolean;
}

export function debertaDerived(config: DebertaV2Config): DebertaDerived {
  const maxRelativePositions = config.max_relative_positions < 1 ? config.max_position_embeddings : config.max_relative_positions;
  const bucketed = config.position_buckets > 0;
  const attentionSpan = bucketed ? config.position_buckets : maxRelativePositions;
  const c2p = config.pos_att_type.includes('c2p');
  const p2c = config.pos_att_type.includes('p2c');
  const relative = config.relative_attention;
  return {
    attentionHeadSize: config.attention_head_size,
    allHeadSize: config.num_attention_heads * config.attention_head_size,
    maxRelativePositions,
    bucketed,
    attentionSpan,
    relEmbeddingRows: 2 * attentionSpan,
    relEmbeddingLayerNorm: config.norm_rel_ebd.split('|').map((s) => s.trim()).includes('layer_norm'),
    c2p,
    p2c,
    scaleFactor: 1 + (c2p ? 1 : 0) + (p2c ? 1 : 0),
    embedProjection: config.embedding_size !== config.hidden_size,
    positionEmbeddings: config.position_biased_input,
    tokenTypeEmbeddings: config.type_vocab_size > 0,
    conv: config.conv_kernel_size > 0,
    separatePositionKey: relative && !config.share_att_key && c2p,
    separatePositionQuery: relative && !config.share_att_key && p2c,
  };
}
