// RoBERTa (Liu et al. 2019) as HuggingFace transformers' modeling_roberta.py computes it (encoder
// only): the masked-LM baseline the CamemBERTa paper compares against. Attribute names are HF's,
// so parameter paths are checkpoint keys.
import { Tensor, IndexDType, zeros } from '../../tensor';
import { Module, Parameter, Linear, Embedding, LayerNorm, Dropout } from '../../nn';
import { PreTrainedModule, ModelInitOptions, initializeModel } from '../pretrained-module';
import { lowestValue } from '../activations';
import { RobertaConfig } from './config';
import { ResidualOutput, Intermediate, tiedDecoder } from '../blocks';
import { maskedLMLoss } from '../deberta/modeling';

export interface RobertaInputs {
  inputIds: Tensor<IndexDType>;
  /** [B, L], 1 for real tokens, 0 for padding; all ones when omitted. */
  attentionMask?: Tensor;
  tokenTypeIds?: Tensor<IndexDType>;
  /** Defaults to fairseq's numbering: pad_token_id + 1, + 2, ... over non-pad tokens, pad_token_id at pads. */
  positionIds?: Tensor<IndexDType>;
}

/** HF's create_position_ids_from_input_ids: cumsum of the non-pad mask, offset by padding_idx. */
export function robertaPositionIds(inputIds: Tensor<IndexDType>, paddingIdx: number): Tensor<'int64'> {
  const notPad = inputIds.ne(paddingIdx).to('int32');
  return notPad.cumsum(1, 'int32').mul(notPad).to('int64').add(paddingIdx) as Tensor<'int64'>;
}

export class RobertaEmbeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding;
  token_type_embeddings: Embedding;
  LayerNorm: LayerNorm;
  dropout: Dropout;
  private readonly paddingIdx: number;

  constructor(config: RobertaConfig) {
    super();
    this.paddingIdx = config.pad_token_id;
    this.word_embeddings = new Embedding(config.vocab_size, config.hidden_size, config.pad_token_id);
    this.position_embeddings = new Embedding(config.max_position_embeddings, config.hidden_size, config.pad_token_id);
    this.token_type_embeddings = new Embedding(config.type_vocab_size, config.hidden_size);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
  }

  forward(inputs: RobertaInputs): Tensor {
    const positionIds = inputs.positionIds ?? robertaPositionIds(inputs.inputIds, this.paddingIdx);
    const tokenTypeIds = inputs.tokenTypeIds ?? zeros(inputs.inputIds.shape, { dtype: 'int64', device: inputs.inputIds.device });
    const x = this.word_embeddings.forward(inputs.inputIds)
      .add(this.token_type_embeddings.forward(tokenTypeIds))
      .add(this.position_embeddings.forward(positionIds));
    return this.dropout.forward(this.LayerNorm.forward(x));
  }
}

/** softmax(Q K^T / sqrt(d), padded keys masked) V over N heads. */
export class RobertaSelfAttention extends Module {
  query: Linear;
  key: Linear;
  value: Linear;
  dropout: Dropout;
  private readonly heads: number;
  private readonly headSize: number;

  constructor(config: RobertaConfig) {
    super();
    this.heads = config.num_attention_heads;
    this.headSize = config.hidden_size / config.num_attention_heads;
    this.query = new Linear(config.hidden_size, config.hidden_size);
    this.key = new Linear(config.hidden_size, config.hidden_size);
    this.value = new Linear(config.hidden_size, config.hidden_size);
    this.dropout = new Dropout(config.attention_probs_dropout_prob);
  }

  private splitHeads(x: Tensor): Tensor {
    const [B, L] = x.shape;
    return x.view(B, L, this.heads, this.headSize).permute(0, 2, 1, 3);
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>): Tensor {
    const [B, L] = hidden.shape;
    const query = this.splitHeads(this.query.forward(hidden));
    const key = this.splitHeads(this.key.forward(hidden));
    const value = this.splitHeads(this.value.forward(hidden));
    const scores = query.matmul(key.transpose(-1, -2)).mul(this.headSize ** -0.5);
    const probs = this.dropout.forward(scores.maskedFill(keyIsPad, lowestValue(scores.dtype)).softmax(-1));
    return probs.matmul(value).permute(0, 2, 1, 3).reshape(B, L, this.heads * this.headSize);
  }
}

export class RobertaAttention extends Module {
  self: RobertaSelfAttention;
  output: ResidualOutput;

  constructor(config: RobertaConfig) {
    super();
    this.self = new RobertaSelfAttention(config);
    this.output = new ResidualOutput(config.hidden_size, config);
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>): Tensor {
    return this.output.forward(this.self.forward(hidden, keyIsPad), hidden);
  }
}

export class RobertaLayer extends Module {
  attention: RobertaAttention;
  intermediate: Intermediate;
  output: ResidualOutput;

  constructor(config: RobertaConfig) {
    super();
    this.attention = new RobertaAttention(config);
    this.intermediate = new Intermediate(config);
    this.output = new ResidualOutput(config.intermediate_size, config);
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>): Tensor {
    const attended = this.attention.forward(hidden, keyIsPad);
    return this.output.forward(this.intermediate.forward(attended), attended);
  }
}

export class RobertaEncoder extends Module {
  layer: RobertaLayer[];

  constructor(config: RobertaConfig) {
    super();
    this.layer = Array.from({ length: config.num_hidden_layers }, () => new RobertaLayer(config));
  }

  forward(hidden: Tensor, keyIsPad: Tensor<'bool'>): Tensor {
    for (const layer of this.layer) hidden = layer.forward(hidden, keyIsPad);
    return hidden;
  }
}

/** dense + tanh on the first token's state. */
export class RobertaPooler extends Module {
  dense: Linear;

  constructor(config: RobertaConfig) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
  }

  forward(hidden: Tensor): Tensor {
    return this.dense.forward(hidden.select(1, 0)).tanh();
  }
}

export class RobertaModel extends PreTrainedModule<RobertaConfig> {
  readonly architecture: string = 'RobertaModel';
  readonly baseModelPrefix = 'roberta';
  embeddings: RobertaEmbeddings;
  encoder: RobertaEncoder;
  pooler: RobertaPooler | null;

  /** addPoolingLayer: HF's RobertaModel has a pooler by default; the masked-LM model has none. */
  constructor(config: RobertaConfig, options: ModelInitOptions & { addPoolingLayer?: boolean; initialize?: boolean } = {}) {
    super(config);
    this.embeddings = new RobertaEmbeddings(config);
    this.encoder = new RobertaEncoder(config);
    this.pooler = (options.addPoolingLayer ?? true) ? new RobertaPooler(config) : null;
    if (options.initialize ?? true) initializeModel(this, config, options);
  }

  forward(inputs: RobertaInputs): { lastHiddenState: Tensor; poolerOutput?: Tensor } {
    const [B, L] = inputs.inputIds.shape;
    const keyIsPad = inputs.attentionMask
      ? inputs.attentionMask.eq(0).view(B, 1, 1, L)
      : zeros([B, 1, 1, L], { dtype: 'bool', device: inputs.inputIds.device });
    const lastHiddenState = this.encoder.forward(this.embeddings.forward(inputs), keyIsPad);
    return this.pooler ? { lastHiddenState, poolerOutput: this.pooler.forward(lastHiddenState) } : { lastHiddenState };
  }
}

/** lm_head: dense, GELU, layer_norm, decoder (weight tied to the word embeddings) + bias. */
export class RobertaLMHead extends Module {
  dense: Linear;
  layer_norm: LayerNorm;
  decoder: Linear;
  bias: Parameter;

  constructor(config: RobertaConfig, wordEmbeddings: Embedding) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
    this.layer_norm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    ({ decoder: this.decoder, bias: this.bias } = tiedDecoder(config.hidden_size, wordEmbeddings));
  }

  forward(hidden: Tensor): Tensor {
    // HF's RobertaLMHead calls the exact GELU whatever hidden_act says.
    return this.decoder.forward(this.layer_norm.forward(this.dense.forward(hidden).gelu('none')));
  }
}

export class RobertaForMaskedLM extends PreTrainedModule<RobertaConfig> {
  readonly architecture = 'RobertaForMaskedLM';
  readonly baseModelPrefix = 'roberta';
  override readonly tiedWeightKeys = ['lm_head.decoder.weight', 'lm_head.decoder.bias'];
  roberta: RobertaModel;
  lm_head: RobertaLMHead;

  constructor(config: RobertaConfig, options: ModelInitOptions = {}) {
    super(config);
    this.roberta = new RobertaModel(config, { addPoolingLayer: false, initialize: false });
    this.lm_head = new RobertaLMHead(config, this.roberta.embeddings.word_embeddings);
    initializeModel(this, config, options);
  }

  head(hidden: Tensor): Tensor {
    return this.lm_head.forward(hidden);
  }

  forward(inputs: RobertaInputs & { labels?: Tensor<IndexDType> }): { lastHiddenState: Tensor; logits: Tensor; loss?: Tensor } {
    const { lastHiddenState } = this.roberta.forward(inputs);
    const logits = this.head(lastHiddenState);
    return inputs.labels ? { lastHiddenState, logits, loss: maskedLMLoss(logits, inputs.labels) } : { lastHiddenState, logits };
  }
}
