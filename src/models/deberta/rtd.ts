// ELECTRA's replaced-token-detection (RTD) head on a DeBERTa discriminator. HF has no class for
// it; the keys follow HF's ElectraDiscriminatorPredictions (`discriminator_predictions.dense`,
// `discriminator_predictions.dense_prediction`), next to the base model under `deberta.`.
// For release, the discriminator is exported as a plain DebertaV2Model (the head is dropped).
import { Tensor, IndexDType, binaryCrossEntropyWithLogits, onesLike } from '../../tensor';
import { Module, Linear } from '../../nn';
import { PreTrainedModule, ModelInitOptions, initializeModel } from '../pretrained-module';
import { activation } from '../activations';
import { DebertaV2Config } from './config';
import { DebertaInputs, DebertaV2Model } from './modeling';

/** dense H -> H, activation (hidden_act), dense_prediction H -> 1: one logit per token. */
export class DiscriminatorPredictions extends Module {
  dense: Linear;
  dense_prediction: Linear;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: DebertaV2Config) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
    this.dense_prediction = new Linear(config.hidden_size, 1);
    this.act = activation(config.hidden_act);
  }

  /** [B, L, H] -> [B, L] logits of "this token was replaced". */
  forward(hidden: Tensor): Tensor {
    return this.dense_prediction.forward(this.act(this.dense.forward(hidden))).squeeze(-1);
  }
}

/**
 * Sigmoid binary cross-entropy over real tokens (attention mask 1; [CLS]/[SEP] included, pads
 * excluded), averaged over them: the discriminator loss of the NVIDIA ELECTRA recipe.
 */
export function replacedTokenDetectionLoss(logits: Tensor, replaced: Tensor, attentionMask: Tensor): Tensor {
  const weight = attentionMask.to(logits.dtype);
  const perToken = binaryCrossEntropyWithLogits(logits, replaced.to(logits.dtype), { reduction: 'none' });
  return perToken.mul(weight).sum().div(weight.sum());
}

export class DebertaV2ForReplacedTokenDetection extends PreTrainedModule<DebertaV2Config> {
  readonly architecture = 'DebertaV2ForReplacedTokenDetection';
  readonly baseModelPrefix = 'deberta';
  deberta: DebertaV2Model;
  discriminator_predictions: DiscriminatorPredictions;

  constructor(config: DebertaV2Config, options: ModelInitOptions = {}) {
    super(config);
    this.deberta = new DebertaV2Model(config, { initialize: false });
    this.discriminator_predictions = new DiscriminatorPredictions(config);
    initializeModel(this, config, options);
  }

  /**
   * `wordEmbeddings` [B, L, E] replaces the lookup of inputIds (gradient-disentangled embedding
   * sharing computes them from the generator's table plus a delta).
   */
  forward(inputs: DebertaInputs & { labels?: Tensor<IndexDType> | Tensor<'bool'> }, options: { wordEmbeddings?: Tensor } = {}):
    { lastHiddenState: Tensor; logits: Tensor; loss?: Tensor } {
    const { lastHiddenState } = this.deberta.forward(inputs, options);
    const logits = this.discriminator_predictions.forward(lastHiddenState);
    if (!inputs.labels) return { lastHiddenState, logits };
    const mask = inputs.attentionMask ?? onesLike(logits);
    return { lastHiddenState, logits, loss: replacedTokenDetectionLoss(logits, inputs.labels, mask) };
  }
}
