// Weight initialisation as HuggingFace's PreTrainedModel._init_weights: Linear and Conv1d
// weights ~ N(0, std) with zero biases, Embedding rows ~ N(0, std) with the padding row zeroed,
// LayerNorm weight ones and bias zeros. Other parameters (an LM head's output bias) keep the
// zeros their constructors gave them, as HF zeroes them too.
//
// HF draws from a plain normal; the TF2 ELECTRA code CamemBERTa was trained with used a
// truncated normal (tf.keras TruncatedNormal: redrawn beyond 2 standard deviations), which
// `truncated: true` reproduces in distribution.
import { Tensor, Generator, DType, noGrad } from '../tensor';
import { Module, Parameter } from './module';
import { Linear, Embedding, LayerNorm, Conv1d } from './layers';

export interface InitOptions {
  /** Standard deviation (HF's initializer_range). */
  std: number;
  /** Truncate at +-2 std (TF TruncatedNormal) instead of a plain normal. Default false. */
  truncated?: boolean;
  /** The random stream; the global default generator when omitted. */
  generator?: Generator;
}

/** Fills t in place from N(mean, std^2). */
export function normal_(t: Tensor, std: number, generator?: Generator): Tensor {
  return noGrad(() => t.normal_(0, std, generator));
}

/**
 * Fills t in place from N(0, std^2) restricted to [-2 std, 2 std], by inverting the normal CDF
 * of a uniform draw over that interval's probability mass (as torch.nn.init.trunc_normal_).
 */
export function truncatedNormal_(t: Tensor, std: number, generator?: Generator): Tensor {
  const cdf = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
  const low = 2 * cdf(-2) - 1;
  const high = 2 * cdf(2) - 1;
  return noGrad(() => t.uniform_(low, high, generator).erfinv_().mul_(std * Math.SQRT2).clamp_(-2 * std, 2 * std));
}

/** Initialises every Linear, Conv1d, Embedding and LayerNorm of the module tree, each parameter once. */
export function initWeights(module: Module, options: InitOptions): void {
  const done = new Set<Parameter<DType>>();
  const draw = (parameter: Parameter<DType>) => {
    if (done.has(parameter)) return; // a tied weight (the MLM decoder) keeps the embedding's values
    done.add(parameter);
    if (options.truncated) truncatedNormal_(parameter, options.std, options.generator);
    else normal_(parameter, options.std, options.generator);
  };
  const fill = (parameter: Parameter<DType> | null, value: number) => {
    if (parameter === null || done.has(parameter)) return;
    done.add(parameter);
    noGrad(() => parameter.fill_(value));
  };
  for (const [, child] of module.namedModules()) {
    if (child instanceof Linear || child instanceof Conv1d) {
      draw(child.weight);
      fill(child.bias, 0);
    } else if (child instanceof Embedding) {
      const fresh = !done.has(child.weight);
      draw(child.weight);
      if (fresh && child.paddingIdx !== null) {
        const paddingRow = child.weight.select(0, child.paddingIdx);
        noGrad(() => paddingRow.zero_());
        paddingRow.dispose();
      }
    } else if (child instanceof LayerNorm) {
      fill(child.weight, 1);
      fill(child.bias, 0);
    }
  }
}

// Abramowitz-Stegun 7.1.26 is too coarse for the interval ends; a series is exact enough here
// (only erf(+-sqrt(2)) is ever needed).
function erf(x: number): number {
  let sum = x;
  let term = x;
  for (let n = 1; n < 60; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
