// AdamW (Loshchilov & Hutter), as torch.optim.AdamW, through libtorch's fused multi-tensor
// kernel: one dispatcher call per parameter group and step, no per-tensor temporaries.
import { Tensor, aten, callOp, zerosLike, zeros, noGrad, tidy, keep, dispose, foreach } from '../tensor';

const fusedAdamW = aten('_fused_adamw_');

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Parameters (by name) exempt from weight decay; by default biases and LayerNorm weights. */
  noWeightDecay?: (name: string) => boolean;
}

/** BERT's convention: no decay on biases and LayerNorm parameters. */
export function isBiasOrLayerNorm(name: string): boolean {
  return name.endsWith('.bias') || /layer_?norm/i.test(name);
}

interface ParameterGroup {
  params: Tensor[];
  expAvg: Tensor[];
  expAvgSq: Tensor[];
  steps: Tensor[];
  weightDecay: number;
}

export class AdamW {
  private readonly groups: ParameterGroup[];
  private readonly options: Required<Omit<AdamWOptions, 'noWeightDecay'>>;
  stepCount = 0;

  constructor(namedParameters: Iterable<[string, Tensor]>, options: AdamWOptions) {
    this.options = { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, ...options };
    const exempt = options.noWeightDecay ?? isBiasOrLayerNorm;
    const decay: Tensor[] = [];
    const plain: Tensor[] = [];
    for (const [name, parameter] of namedParameters) {
      if (!parameter.requiresGrad) continue;
      (exempt(name) ? plain : decay).push(parameter);
    }
    const group = (params: Tensor[], weightDecay: number): ParameterGroup => noGrad(() => ({
      params,
      expAvg: params.map((p) => keep(zerosLike(p))),
      expAvgSq: params.map((p) => keep(zerosLike(p))),
      steps: params.map((p) => keep(zeros([], { device: p.device }))),
      weightDecay,
    }));
    this.groups = [group(decay, this.options.weightDecay), group(plain, 0)].filter((g) => g.params.length > 0);
  }

  /** One update with the gradients in .grad; `lr` overrides the learning rate (schedules). */
  step(lr = this.options.lr): void {
    this.stepCount += 1;
    const [beta1, beta2] = this.options.betas;
    noGrad(() => tidy(() => {
      for (const group of this.groups) {
        const withGrad = group.params.map((p, i) => ({ p, grad: p.grad, i })).filter((entry) => entry.grad !== null);
        if (withGrad.length === 0) continue;
        const pick = (list: Tensor[]) => withGrad.map(({ i }) => list[i].handle);
        // As torch.optim does before the fused kernel: it reads the step count, never advances it.
        foreach.add_(withGrad.map(({ i }) => group.steps[i]), 1);
        callOp(fusedAdamW, withGrad.map(({ p }) => p.handle), withGrad.map(({ grad }) => grad!.handle),
          pick(group.expAvg), pick(group.expAvgSq), [], pick(group.steps),
          lr, beta1, beta2, group.weightDecay, this.options.eps, false, false, null, null);
      }
    }));
  }

  /** Sets every gradient to None (the next backward allocates fresh ones). */
  zeroGrad(): void {
    for (const group of this.groups) for (const p of group.params) p.grad = null;
  }

  dispose(): void {
    for (const group of this.groups) dispose([group.expAvg, group.expAvgSq, group.steps]);
  }
}
