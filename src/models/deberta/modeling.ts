// DeBERTa-V2/V3 (He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled Attention";
// "DeBERTaV3: Improving DeBERTa using ELECTRA-Style Pre-Training with Gradient-Disentangled
// Embedding Sharing") as HuggingFace transformers' modeling_deberta_v2.py computes it.
//
// Read top to bottom: embeddings, relative positions, disentangled attention, the transformer
// layer, the optional convolution, the encoder, then the models and heads. Attribute names are
// HF's, so parameter paths are checkpoint keys (`encoder.layer.0.attention.self.query_proj.weight`).
//
// Shapes: B batch, L sequence length, H hidden size, N heads, d head size, E embedding size,
// V vocabulary, S attention span (position_buckets, or max_relative_positions without buckets).
import { Tensor, tensor, crossEntropy, zeros, arange, full, where, IndexDType, keep, tidy } from '../../tensor';
import { Module, Parameter, Linear, Embedding, LayerNorm, Dropout, Conv1d } from '../../nn';
import { PreTrainedModule, ModelInitOptions, initializeModel } from '../pretrained-module';
import { activation, lowestValue } from '../activations';
import { DebertaV2Config, DebertaDerived, debertaDerived } from './config';
import { ResidualOutput, Intermediate, tiedDecoder } from '../blocks';
import { numLabels } from '../config-json';

export interface DebertaInputs {
  /** [B, L] token ids. */
  inputIds: Tensor<IndexDType>;
  /** [B, L], 1 for real tokens and 0 for padding; all ones when omitted. */
  attentionMask?: Tensor;
  /** [B, L] segment ids (only with type_vocab_size > 0); zeros when omitted. */
  tokenTypeIds?: Tensor<IndexDType>;
  /** [B, L] absolute positions (only with position_biased_input); 0..L-1 when omitted. */
  positionIds?: Tensor<IndexDType>;
}

// ---- Embeddings ------------------------------------------------------------------------------

/**
 * x = word_embeddings[ids] (+ position_embeddings[pos]) (+ token_type_embeddings[types]),
 * projected E -> H by embed_proj when embedding_size != hidden_size, LayerNorm, zeroed at
 * padding (multiplied by the mask), dropout.
 */
export class DebertaV2Embeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding | null;
  token_type_embeddings: Embedding | null;
  embed_proj: Linear | null;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(config: DebertaV2Config, derived: DebertaDerived) {
    super();
    const E = config.embedding_size;
    this.word_embeddings = new Embedding(config.vocab_size, E, config.pad_token_id);
    this.position_embeddings = derived.positionEmbeddings ? new Embedding(config.max_position_embeddings, E) : null;
    this.token_type_embeddings = derived.tokenTypeEmbeddings ? new Embedding(config.type_vocab_size, E) : null;
    this.embed_proj = derived.embedProjection ? new Linear(E, config.hidden_size, { bias: false }) : null;
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
  }

  /** `wordEmbeddings` replaces word_embeddings[ids] (ELECTRA's gradient-disentangled sharing feeds its own). */
  forward(inputs: DebertaInputs, mask: Tensor, wordEmbeddings?: Tensor): Tensor {
    const [, L] = inputs.inputIds.shape;
    let x = wordEmbeddings ?? this.word_embeddings.forward(inputs.inputIds);
    if (this.position_embeddings) {
      x = x.add(this.position_embeddings.forward(inputs.positionIds ?? arange(L, undefined, 1, { device: x.device }).unsqueeze(0)));
    }
    if (this.token_type_embeddings) {
      x = x.add(this.token_type_embeddings.forward(inputs.tokenTypeIds ?? zeros(inputs.inputIds.shape, { dtype: 'int64', device: x.device })));
    }
    if (this.embed_proj) x = this.embed_proj.forward(x);
    x = this.LayerNorm.forward(x);
    x = x.mul(mask.unsqueeze(2).to(x.dtype));
    return this.dropout.forward(x);
  }
}

// ---- Relative positions ------------------------------------------------------------------------

/**
 * bucket(r) for r = -(L-1) .. L-1, HF's make_log_bucket_position: |r| <= mid stays r, farther
 * distances are log-compressed into mid..bucketSize-1. Computed with libtorch float32 ops in
 * HF's exact order, because ceil() of a float32 log makes the result sensitive to the last bit.
 */
export function relativePositionBuckets(length: number, bucketSize: number, maxPosition: number): number[] {
  return tidy(() => {
    const r = arange(-(length - 1), length); // int64
    if (!(bucketSize > 0 && maxPosition > 0)) return Array.from(r.toTypedArray() as BigInt64Array, Number);
    const mid = Math.floor(bucketSize / 2);
    const inner = r.lt(mid).logicalAnd(r.gt(-mid));
    const absPos = where(inner, full([], mid - 1, { dtype: 'int64' }), r.abs());
    const logDenominator = full([], (maxPosition - 1) / mid).log(); // torch.log(torch.tensor(float)) in float32
    const logPos = absPos.div(mid).log().div(logDenominator).mul(mid - 1).ceil().add(mid);
    const bucket = where(absPos.le(mid), r.to('float32'), logPos.mul(r.sign().to('float32')));
    return Array.from(bucket.to('int64').toTypedArray() as BigInt64Array, Number);
  });
}

/**
 * Everything disentangled attention needs about a length L, computed once per length.
 * idx(i, j) = clamp(bucket(i - j) + S, 0, 2S - 1) picks the rel_embeddings row of the pair; since
 * it depends on i - j only and grows with it, the pairs use the contiguous rows
 * firstRow .. firstRow + rows - 1, at most 2L - 1 of the 2S: only those are projected.
 */
export interface RelativePositionPlan {
  length: number;
  firstRow: number;
  rows: number;
  /**
   * True when idx(i, j) - firstRow = i - j + L - 1 (no bucketing or clamping within distance
   * L - 1): c2p and p2c are then diagonal strips of the projected scores, taken as views.
   */
  identity: boolean;
  /** [L, L] int64: idx(i, j) - firstRow (c2p gathers row i of its scores at these columns). */
  c2pIndex: Tensor<'int64'>;
  /** [L, L] int64: idx(j, i) - firstRow at [i][j]... i.e. the transposed index p2c gathers with. */
  p2cIndex: Tensor<'int64'>;
}

export function relativePositionPlan(length: number, derived: DebertaDerived, device: string): RelativePositionPlan {
  const S = derived.attentionSpan;
  const buckets = relativePositionBuckets(length, derived.bucketed ? S : -1, derived.maxRelativePositions);
  const rowOf = buckets.map((b) => Math.min(Math.max(b + S, 0), 2 * S - 1)); // rowOf[k] = idx at i - j = k - (L-1)
  const firstRow = rowOf[0];
  const rows = rowOf[rowOf.length - 1] - firstRow + 1;
  const identity = rows === 2 * length - 1 && rowOf.every((row, k) => row - firstRow === k);
  const c2p = new BigInt64Array(length * length);
  const p2c = new BigInt64Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < length; j++) {
      c2p[i * length + j] = BigInt(rowOf[i - j + length - 1] - firstRow);
      p2c[i * length + j] = BigInt(rowOf[j - i + length - 1] - firstRow);
    }
  }
  return {
    length, firstRow, rows, identity,
    c2pIndex: keep(tensor(c2p, { shape: [length, length], device })),
    p2cIndex: keep(tensor(p2c, { shape: [length, length], device })),
  };
}

/**
 * [.., L, 2L-1] -> [.., L, L] with out[i][j] = in[i][j - i + L - 1], one strided view (no gather):
 * element (i, j) sits at (L - 1) * s1 + i * (s2 - s1) + j * s1 for the input's strides s2, s1.
 * One as_strided rather than narrow / view / narrow: its backward writes the gradient into one
 * zeroed buffer, where the two narrows' each zeroed and copied a full [.., L, 2L-1] (3.5 ms less
 * per strip at [16, 4, 128, 255], 12 strips a step in the small config).
 */
function diagonalStrip(scores: Tensor, length: number): Tensor {
  const shape = scores.shape;
  const strides = scores.stride();
  const n = shape.length;
  const [rowStride, columnStride] = [strides[n - 2], strides[n - 1]];
  return scores.asStrided([...shape.slice(0, -2), length, length], [...strides.slice(0, -2), rowStride - columnStride, columnStride],
    scores.storageOffset() + (length - 1) * columnStride);
}

// ---- Disentangled attention -------------------------------------------------------------------

/**
 * score(i, j) = [ Q_i.K_j  (content to content)
 *               + Q_i.Kr[idx(i,j)]  (c2p: content to position)
 *               + K_j.Qr[idx(i,j)]  (p2c: position to content) ] / sqrt(d * (1 + #terms))
 * Kr and Qr project the (normalised) relative embeddings with key_proj / query_proj when
 * share_att_key (V3), else with pos_key_proj / pos_query_proj. Padded keys get the dtype's lowest
 * score, then softmax, dropout, weighted sum of V.
 *
 * HF divides K by the scale before Q.K (an fp16 overflow guard); here the scale divides Q and Qr
 * once, which keeps every product as small and puts each term's scaling in one place.
 */
export class DisentangledSelfAttention extends Module {
  query_proj: Linear;
  key_proj: Linear;
  value_proj: Linear;
  pos_key_proj: Linear | null;
  pos_query_proj: Linear | null;
  pos_dropout: Dropout;
  dropout: Dropout;
  private readonly heads: number;
  private readonly headSize: number;
  private readonly scale: number;

  constructor(config: DebertaV2Config, private readonly derived: DebertaDerived) {
    super();
    const H = config.hidden_size;
    this.heads = config.num_attention_heads;
    this.headSize = derived.attentionHeadSize;
    this.query_proj = new Linear(H, derived.allHeadSize);
    this.key_proj = new Linear(H, derived.allHeadSize);
    this.value_proj = new Linear(H, derived.allHeadSize);
    this.pos_key_proj = derived.separatePositionKey ? new Linear(H, derived.allHeadSize) : null;
    this.pos_query_proj = derived.separatePositionQuery ? new Linear(H, derived.allHeadSize) : null;
    this.pos_dropout = new Dropout(config.hidden_dropout_prob);
    this.dropout = new Dropout(config.attention_probs_dropout_prob);
    // HF: torch.sqrt(torch.tensor(d, dtype=float) * scale_factor), a float32 value.
    this.scale = Math.fround(Math.sqrt(Math.fround(this.headSize * derived.scaleFactor)));
  }

  /** [B, L, N*d] -> [B, N, L, d] */
  private splitHeads(x: Tensor): Tensor {
    const [B, L] = x.shape;
    return x.view(B, L, this.heads, this.headSize).permute(0, 2, 1, 3);
  }

  /** [R, N*d] -> [N, d, R], ready to multiply [B, N, L, d] queries or keys. */
  private positionHeads(x: Tensor): Tensor {
    const [R] = x.shape;
    return x.view(R, this.heads, this.headSize).permute(1, 2, 0);
  }

  /**
   * hidden [B, L, H]; keyIsPad [B, 1, 1, L] bool; relEmbeddings: the plan's rows of the
   * normalised rel_embeddings, [rows, H] (null without relative attention).
   */
  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>, relEmbeddings: Tensor | null, plan: RelativePositionPlan | null): Tensor {
    const [B, L] = hidden.shape;
    const query = this.splitHeads(this.query_proj.forward(hidden)).div(this.scale);
    const key = this.splitHeads(this.key_proj.forward(hidden));
    const value = this.splitHeads(this.value_proj.forward(hidden));

    // The c2p and p2c strips and the padding mask go into the content scores in place (the same
    // sums in the same order as out of place): matmul, add and masked_fill save nothing that the
    // writes change, so autograd allows it. Each term (and the [B, N, L, rows] product it is cut
    // from) and the pre-softmax scores are freed as soon as they are used, not at the layer's end:
    // autograd saved none of them.
    const scores = query.matmul(key.transpose(-1, -2)); // [B, N, L, L]
    const addTerm = (term: () => Tensor) => {
      const computed = tidy(term);
      scores.add_(computed);
      computed.dispose();
    };
    if (relEmbeddings && plan) {
      const rel = this.pos_dropout.forward(relEmbeddings);
      if (this.derived.c2p) addTerm(() => this.contentToPosition(query, rel, plan, B));
      if (this.derived.p2c) addTerm(() => this.positionToContent(key, rel, plan, B));
    }
    scores.maskedFill_(keyIsPad, lowestValue(scores.dtype));
    const attention = scores.softmax(-1);
    scores.dispose();
    const probs = this.dropout.forward(attention);
    const context = probs.matmul(value); // [B, N, L, d]
    return context.permute(0, 2, 1, 3).reshape(B, L, this.heads * this.headSize);
  }

  /** c2p[i][j] = (Q_i / scale) . Kr[idx(i, j)] */
  private contentToPosition(query: Tensor, rel: Tensor, plan: RelativePositionPlan, B: number): Tensor {
    const projection = this.pos_key_proj ?? this.key_proj;
    const L = plan.length;
    if (plan.identity) {
      // Rows in reverse order make column (i - j + L - 1) counted from the end a diagonal strip.
      const positionKey = this.positionHeads(projection.forward(rel.flip(0)));
      return diagonalStrip(query.matmul(positionKey), L);
    }
    const positionKey = this.positionHeads(projection.forward(rel));
    return query.matmul(positionKey).gather(-1, plan.c2pIndex.expand(B, this.heads, L, L));
  }

  /** p2c[i][j] = K_j . (Qr[idx(i, j)] / scale), computed per key row j, then transposed. */
  private positionToContent(key: Tensor, rel: Tensor, plan: RelativePositionPlan, B: number): Tensor {
    const projection = this.pos_query_proj ?? this.query_proj;
    const L = plan.length;
    const positionQuery = this.positionHeads(projection.forward(rel).div(this.scale));
    const byKey = key.matmul(positionQuery); // [B, N, L(j), rows]
    if (plan.identity) return diagonalStrip(byKey, L).transpose(-1, -2);
    return byKey.gather(-1, plan.p2cIndex.expand(B, this.heads, L, L)).transpose(-1, -2);
  }
}

export class DebertaV2Attention extends Module {
  self: DisentangledSelfAttention;
  output: ResidualOutput;

  constructor(config: DebertaV2Config, derived: DebertaDerived) {
    super();
    this.self = new DisentangledSelfAttention(config, derived);
    this.output = new ResidualOutput(derived.allHeadSize, config);
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>, relEmbeddings: Tensor | null, plan: RelativePositionPlan | null): Tensor {
    return this.output.forward(this.self.forward(hidden, keyIsPad, relEmbeddings, plan), hidden);
  }
}

/** One transformer block: attention, then the feed-forward network (intermediate, output). */
export class DebertaV2Layer extends Module {
  attention: DebertaV2Attention;
  intermediate: Intermediate;
  output: ResidualOutput;

  constructor(config: DebertaV2Config, derived: DebertaDerived) {
    super();
    this.attention = new DebertaV2Attention(config, derived);
    this.intermediate = new Intermediate(config);
    this.output = new ResidualOutput(config.intermediate_size, config);
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>, relEmbeddings: Tensor | null, plan: RelativePositionPlan | null): Tensor {
    const attended = this.attention.forward(hidden, keyIsPad, relEmbeddings, plan);
    return this.output.forward(this.intermediate.forward(attended), attended);
  }
}

// ---- Convolution (DeBERTa-V2's n-gram layer) --------------------------------------------------

/**
 * Applied once, after layer 0: out = act(dropout(Conv1d(embeddings) zeroed at padding)),
 * result = LayerNorm(layer0 + out) * mask.
 */
export class ConvLayer extends Module {
  conv: Conv1d;
  LayerNorm: LayerNorm;
  dropout: Dropout;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: DebertaV2Config) {
    super();
    const k = config.conv_kernel_size;
    this.conv = new Conv1d(config.hidden_size, config.hidden_size, k, { padding: (k - 1) / 2, groups: config.conv_groups });
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
    this.act = activation(config.conv_act);
  }

  forward(embeddings: Tensor, residual: Tensor, mask: Tensor): Tensor {
    const isPad = mask.eq(0).unsqueeze(-1);
    const out = this.conv.forward(embeddings.permute(0, 2, 1)).permute(0, 2, 1).maskedFill(isPad, 0);
    const activated = this.act(this.dropout.forward(out));
    const normed = this.LayerNorm.forward(residual.add(activated));
    return normed.mul(mask.unsqueeze(2).to(normed.dtype));
  }
}

// ---- Encoder -----------------------------------------------------------------------------------

/**
 * The layers, the relative embeddings they share (rel_embeddings, 2S rows, normalised by
 * encoder.LayerNorm when norm_rel_ebd has layer_norm), and the optional ConvLayer.
 */
export class DebertaV2Encoder extends Module {
  layer: DebertaV2Layer[];
  rel_embeddings: Embedding | null;
  LayerNorm: LayerNorm | null;
  conv: ConvLayer | null;
  private readonly plans = new Map<string, RelativePositionPlan>();

  constructor(config: DebertaV2Config, private readonly derived: DebertaDerived) {
    super();
    this.layer = Array.from({ length: config.num_hidden_layers }, () => new DebertaV2Layer(config, derived));
    this.rel_embeddings = config.relative_attention ? new Embedding(derived.relEmbeddingRows, config.hidden_size) : null;
    this.LayerNorm = derived.relEmbeddingLayerNorm ? new LayerNorm(config.hidden_size, config.layer_norm_eps) : null;
    this.conv = derived.conv ? new ConvLayer(config) : null;
  }

  /** The plan for length L on a device, made on first use and kept until dispose(). */
  relativePositionPlan(length: number, device: string): RelativePositionPlan {
    const key = `${length}@${device}`;
    let plan = this.plans.get(key);
    if (!plan) {
      plan = relativePositionPlan(length, this.derived, device);
      this.plans.set(key, plan);
    }
    return plan;
  }

  releaseCaches(): void {
    for (const plan of this.plans.values()) {
      plan.c2pIndex.dispose();
      plan.p2cIndex.dispose();
    }
    this.plans.clear();
  }

  forward(embeddings: Tensor, mask: Tensor): Tensor {
    const [B, L] = mask.shape;
    const keyIsPad = mask.eq(0).view(B, 1, 1, L);
    let plan: RelativePositionPlan | null = null;
    let relEmbeddings: Tensor | null = null;
    if (this.rel_embeddings) {
      plan = this.relativePositionPlan(L, embeddings.device);
      // LayerNorm is per row, so normalising only the rows in use equals HF's LayerNorm of all 2S.
      relEmbeddings = this.rel_embeddings.weight.narrow(0, plan.firstRow, plan.rows);
      if (this.LayerNorm) relEmbeddings = this.LayerNorm.forward(relEmbeddings);
    }
    let hidden = embeddings;
    // A scope per layer frees its temporaries' handles as soon as the layer is done (autograd keeps
    // what backward needs): without it every temporary of the pass lives until the caller's scope
    // ends, after backward, and the peak memory of a training step grows with depth.
    this.layer.forEach((layer, i) => {
      const input = hidden;
      hidden = tidy(() => {
        const out = layer.forward(input, keyIsPad, relEmbeddings, plan);
        return i === 0 && this.conv ? this.conv.forward(embeddings, out, mask) : out;
      });
    });
    return hidden;
  }
}

// ---- Models ------------------------------------------------------------------------------------

function maskOf(inputs: DebertaInputs): Tensor {
  return inputs.attentionMask ?? full(inputs.inputIds.shape, 1, { dtype: 'int64', device: inputs.inputIds.device });
}

/** The bare encoder: embeddings then encoder; outputs the last hidden state [B, L, H]. */
export class DebertaV2Model extends PreTrainedModule<DebertaV2Config> {
  readonly architecture: string = 'DebertaV2Model';
  readonly baseModelPrefix = 'deberta';
  embeddings: DebertaV2Embeddings;
  encoder: DebertaV2Encoder;

  constructor(config: DebertaV2Config, options: ModelInitOptions & { initialize?: boolean } = {}) {
    super(config);
    const derived = debertaDerived(config);
    this.embeddings = new DebertaV2Embeddings(config, derived);
    this.encoder = new DebertaV2Encoder(config, derived);
    if (options.initialize ?? true) initializeModel(this, config, options);
  }

  forward(inputs: DebertaInputs, options: { wordEmbeddings?: Tensor } = {}): { lastHiddenState: Tensor } {
    const mask = maskOf(inputs);
    const embeddings = this.embeddings.forward(inputs, mask, options.wordEmbeddings);
    return { lastHiddenState: this.encoder.forward(embeddings, mask) };
  }
}

/** HF's LegacyDebertaV2PredictionHeadTransform: dense H -> E, activation, LayerNorm(E). */
export class LegacyPredictionHeadTransform extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: DebertaV2Config) {
    super();
    this.dense = new Linear(config.hidden_size, config.embedding_size);
    this.LayerNorm = new LayerNorm(config.embedding_size, config.layer_norm_eps);
    this.act = activation(config.hidden_act);
  }

  forward(hidden: Tensor): Tensor {
    return this.LayerNorm.forward(this.act(this.dense.forward(hidden)));
  }
}

/** `cls.predictions`: transform, then the decoder whose weight is the word embeddings, plus bias. */
export class LegacyLMPredictionHead extends Module {
  transform: LegacyPredictionHeadTransform;
  decoder: Linear;
  bias: Parameter;

  constructor(config: DebertaV2Config, wordEmbeddings: Embedding) {
    super();
    this.transform = new LegacyPredictionHeadTransform(config);
    ({ decoder: this.decoder, bias: this.bias } = tiedDecoder(config.embedding_size, wordEmbeddings));
  }

  forward(hidden: Tensor): Tensor {
    return this.decoder.forward(this.transform.forward(hidden));
  }
}

export class LegacyOnlyMLMHead extends Module {
  predictions: LegacyLMPredictionHead;

  constructor(config: DebertaV2Config, wordEmbeddings: Embedding) {
    super();
    this.predictions = new LegacyLMPredictionHead(config, wordEmbeddings);
  }

  forward(hidden: Tensor): Tensor {
    return this.predictions.forward(hidden);
  }
}

/** HF's non-legacy head (`lm_predictions.lm_head`, legacy: false): needs embedding_size == hidden_size. */
export class DebertaV2LMPredictionHead extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  bias: Parameter;
  private readonly act: (x: Tensor) => Tensor;
  // A function, not an attribute holding the module: the embedding is registered under
  // deberta.embeddings only, and to() may replace its weight.
  private readonly wordEmbeddingWeight: () => Tensor;

  constructor(config: DebertaV2Config, wordEmbeddings: Embedding) {
    super();
    this.wordEmbeddingWeight = () => wordEmbeddings.weight;
    this.dense = new Linear(config.hidden_size, config.hidden_size);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.bias = new Parameter(zeros([config.vocab_size]));
    this.act = activation(config.hidden_act);
  }

  forward(hidden: Tensor): Tensor {
    const transformed = this.LayerNorm.forward(this.act(this.dense.forward(hidden)));
    return transformed.matmul(this.wordEmbeddingWeight().t()).add(this.bias);
  }
}

export class DebertaV2OnlyMLMHead extends Module {
  lm_head: DebertaV2LMPredictionHead;

  constructor(config: DebertaV2Config, wordEmbeddings: Embedding) {
    super();
    this.lm_head = new DebertaV2LMPredictionHead(config, wordEmbeddings);
  }

  forward(hidden: Tensor): Tensor {
    return this.lm_head.forward(hidden);
  }
}

/** Masked-LM loss: mean cross-entropy over positions whose label is not -100. */
export function maskedLMLoss(logits: Tensor, labels: Tensor<IndexDType>): Tensor {
  const V = logits.size(-1);
  return crossEntropy(logits.reshape(-1, V), labels.reshape(-1), { ignoreIndex: -100 });
}

/**
 * The generator of ELECTRA-style pretraining: DebertaV2Model under `deberta` and the masked-LM
 * head under `cls` (legacy: true, the default and the only head that can hold an
 * embedding_size wider than hidden_size) or `lm_predictions` (legacy: false).
 */
export class DebertaV2ForMaskedLM extends PreTrainedModule<DebertaV2Config> {
  readonly architecture = 'DebertaV2ForMaskedLM';
  readonly baseModelPrefix = 'deberta';
  override readonly tiedWeightKeys: readonly string[];
  deberta: DebertaV2Model;
  cls: LegacyOnlyMLMHead | null;
  lm_predictions: DebertaV2OnlyMLMHead | null;

  constructor(config: DebertaV2Config, options: ModelInitOptions = {}) {
    super(config);
    if (!config.legacy && config.embedding_size !== config.hidden_size) {
      throw new Error(`DebertaV2ForMaskedLM: legacy: false needs embedding_size == hidden_size (got ${config.embedding_size} and ${config.hidden_size}); use legacy: true`);
    }
    this.deberta = new DebertaV2Model(config, { initialize: false });
    const words = this.deberta.embeddings.word_embeddings;
    this.cls = config.legacy ? new LegacyOnlyMLMHead(config, words) : null;
    this.lm_predictions = config.legacy ? null : new DebertaV2OnlyMLMHead(config, words);
    this.tiedWeightKeys = config.legacy ? ['cls.predictions.decoder.weight', 'cls.predictions.decoder.bias'] : [];
    initializeModel(this, config, options);
  }

  /** Vocabulary logits [.., V] of hidden states [.., H] (any subset of positions). */
  head(hidden: Tensor): Tensor {
    return this.cls ? this.cls.forward(hidden) : this.lm_predictions!.forward(hidden);
  }

  forward(inputs: DebertaInputs & { labels?: Tensor<IndexDType> }): { lastHiddenState: Tensor; logits: Tensor; loss?: Tensor } {
    const { lastHiddenState } = this.deberta.forward(inputs);
    const logits = this.head(lastHiddenState);
    return inputs.labels ? { lastHiddenState, logits, loss: maskedLMLoss(logits, inputs.labels) } : { lastHiddenState, logits };
  }
}

/** HF's ContextPooler: dropout, dense on the first token's state, activation. */
export class ContextPooler extends Module {
  dense: Linear;
  dropout: Dropout;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: DebertaV2Config) {
    super();
    this.dense = new Linear(config.pooler_hidden_size, config.pooler_hidden_size);
    this.dropout = new Dropout(config.pooler_dropout);
    this.act = activation(config.pooler_hidden_act);
  }

  forward(hidden: Tensor): Tensor {
    return this.act(this.dense.forward(this.dropout.forward(hidden.select(1, 0))));
  }
}

/** Sentence classification: pooler (first token), dropout, classifier -> [B, num_labels]. */
export class DebertaV2ForSequenceClassification extends PreTrainedModule<DebertaV2Config> {
  readonly architecture = 'DebertaV2ForSequenceClassification';
  readonly baseModelPrefix = 'deberta';
  deberta: DebertaV2Model;
  pooler: ContextPooler;
  classifier: Linear;
  dropout: Dropout;
  readonly numLabels: number;

  constructor(config: DebertaV2Config, options: ModelInitOptions = {}) {
    super(config);
    this.numLabels = numLabels(config.extra);
    this.deberta = new DebertaV2Model(config, { initialize: false });
    this.pooler = new ContextPooler(config);
    this.classifier = new Linear(config.pooler_hidden_size, this.numLabels);
    this.dropout = new Dropout(config.cls_dropout ?? config.hidden_dropout_prob);
    initializeModel(this, config, options);
  }

  forward(inputs: DebertaInputs): { lastHiddenState: Tensor; logits: Tensor } {
    const { lastHiddenState } = this.deberta.forward(inputs);
    return { lastHiddenState, logits: this.classifier.forward(this.dropout.forward(this.pooler.forward(lastHiddenState))) };
  }
}

/** Per-token classification: dropout, classifier -> [B, L, num_labels]. */
export class DebertaV2ForTokenClassification extends PreTrainedModule<DebertaV2Config> {
  readonly architecture = 'DebertaV2ForTokenClassification';
  readonly baseModelPrefix = 'deberta';
  deberta: DebertaV2Model;
  dropout: Dropout;
  classifier: Linear;
  readonly numLabels: number;

  constructor(config: DebertaV2Config, options: ModelInitOptions = {}) {
    super(config);
    this.numLabels = numLabels(config.extra);
    this.deberta = new DebertaV2Model(config, { initialize: false });
    this.dropout = new Dropout(config.hidden_dropout_prob);
    this.classifier = new Linear(config.hidden_size, this.numLabels);
    initializeModel(this, config, options);
  }

  forward(inputs: DebertaInputs): { lastHiddenState: Tensor; logits: Tensor } {
    const { lastHiddenState } = this.deberta.forward(inputs);
    return { lastHiddenState, logits: this.classifier.forward(this.dropout.forward(lastHiddenState)) };
  }
}
