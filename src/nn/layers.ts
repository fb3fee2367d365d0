// The layers the models use, with torch.nn's attribute names (weight, bias) so their paths match
// checkpoints. Weights start at zero (ones for LayerNorm); initWeights() (init.ts) draws them.
import { Tensor, IndexDType, zeros, ones, linear, embedding, layerNorm, dropout, conv1d } from '../tensor';
import { Module, Parameter } from './module';

/** y = x W^T + b, W of shape [outFeatures, inFeatures]. */
export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: { bias?: boolean } = {}) {
    super();
    this.weight = new Parameter(zeros([outFeatures, inFeatures]));
    this.bias = (options.bias ?? true) ? new Parameter(zeros([outFeatures])) : null;
  }

  forward(input: Tensor): Tensor {
    return linear(input, this.weight, this.bias);
  }
}

/**
 * A lookup table of numEmbeddings rows. With paddingIdx, that row gets no gradient (as
 * torch.nn.Embedding) and is zeroed at initialisation.
 */
export class Embedding extends Module {
  weight: Parameter;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, readonly paddingIdx: number | null = null) {
    super();
    if (paddingIdx !== null && (paddingIdx < 0 || paddingIdx >= numEmbeddings)) {
      throw new RangeError(`Embedding: paddingIdx ${paddingIdx} is outside [0, ${numEmbeddings})`);
    }
    this.weight = new Parameter(zeros([numEmbeddings, embeddingDim]));
  }

  forward(ids: Tensor<IndexDType>): Tensor {
    return embedding(this.weight, ids, this.paddingIdx ?? -1);
  }
}

/** Normalises over the last dimension, then scales and shifts (weight ones, bias zeros). */
export class LayerNorm extends Module {
  weight: Parameter | null;
  bias: Parameter | null;

  constructor(readonly normalizedShape: number, readonly eps = 1e-5, options: { elementwiseAffine?: boolean } = {}) {
    super();
    const affine = options.elementwiseAffine ?? true;
    this.weight = affine ? new Parameter(ones([normalizedShape])) : null;
    this.bias = affine ? new Parameter(zeros([normalizedShape])) : null;
  }

  forward(input: Tensor): Tensor {
    return layerNorm(input, [this.normalizedShape], this.weight, this.bias, this.eps);
  }
}

/** Inverted dropout, active only while training. */
export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout: p must be in [0, 1), got ${p}`);
  }

  forward(input: Tensor): Tensor {
    return dropout(input, this.p, this.training);
  }
}

/** Convolution over [batch, channels, length]; weight [out, in / groups, kernel]. */
export class Conv1d extends Module {
  weight: Parameter;
  bias: Parameter | null;
  readonly padding: number;
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number,
    options: { padding?: number; groups?: number; bias?: boolean } = {}) {
    super();
    this.padding = options.padding ?? 0;
    this.groups = options.groups ?? 1;
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new RangeError(`Conv1d: channels ${inChannels} -> ${outChannels} are not divisible by groups ${this.groups}`);
    }
    this.weight = new Parameter(zeros([outChannels, inChannels / this.groups, kernelSize]));
    this.bias = (options.bias ?? true) ? new Parameter(zeros([outChannels])) : null;
  }

  forward(input: Tensor): Tensor {
    return conv1d(input, this.weight, this.bias, { padding: this.padding, groups: this.groups });
  }
}
