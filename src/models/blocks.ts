// The feed-forward pieces every BERT-family layer shares, with HuggingFace's attribute names
// (HF repeats them per model: DebertaV2SelfOutput / DebertaV2Output / RobertaSelfOutput ...).
import { Tensor } from '../tensor';
import { zeros } from '../tensor';
import { Module, Parameter, Linear, LayerNorm, Dropout, Embedding } from '../nn';
import { activation } from './activations';
import { Activation } from './config-json';

export interface BlockConfig {
  hidden_size: number;
  intermediate_size: number;
  hidden_act: Activation;
  hidden_dropout_prob: number;
  layer_norm_eps: number;
}

/** dense, dropout, then LayerNorm(x + residual): after attention (`attention.output`) and the FFN (`output`). */
export class ResidualOutput extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(inFeatures: number, config: BlockConfig) {
    super();
    this.dense = new Linear(inFeatures, config.hidden_size);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
  }

  forward(hidden: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(hidden)).add(residual));
  }
}

/** The FFN's first half (`intermediate`): dense hidden -> intermediate_size, then the activation. */
export class Intermediate extends Module {
  dense: Linear;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: BlockConfig) {
    super();
    this.dense = new Linear(config.hidden_size, config.intermediate_size);
    this.act = activation(config.hidden_act);
  }

  forward(hidden: Tensor): Tensor {
    return this.act(this.dense.forward(hidden));
  }
}

/**
 * A masked-LM output layer tied to the word embeddings: decoder.weight is the embedding matrix and
 * decoder.bias is the returned bias (HF's `*.decoder.weight` / `*.bias`), one parameter each.
 */
export function tiedDecoder(inFeatures: number, wordEmbeddings: Embedding): { decoder: Linear; bias: Parameter } {
  const [vocabSize] = wordEmbeddings.weight.shape;
  const decoder = new Linear(inFeatures, vocabSize);
  const bias = new Parameter(zeros([vocabSize]));
  decoder.weight.dispose();
  decoder.bias!.dispose();
  decoder.weight = wordEmbeddings.weight;
  decoder.bias = bias;
  return { decoder, bias };
}
