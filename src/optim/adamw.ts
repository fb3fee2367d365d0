// AdamW (Loshchilov & Hutter), as torch.optim.AdamW, through libtorch's fused multi-tensor
// kernel: one dispatcher call per parameter group and step, no per-tensor temporaries. A step the
// loss scaler flags (foundInf = 1) is skipped inside the kernel, and the step counters are rolled
// back on the device as torch.optim does, so skipping needs no host synchronisation.
import { Tensor, aten, callOp, zeros, noGrad, tidy, keep, dispose, foreach } from '../tensor';
import { AdamMoments, Optimizer, StepOptions, zeroMoments, checkOptimizerKind, checkStateTensors, copyStateTensors, trainableParameters } from './optimizer';

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

interface ParameterGroup extends AdamMoments {
  weightDecay: number;
}

const KIND = 'AdamW';

export class AdamW implements Optimizer {
  private readonly groups: ParameterGroup[];
  private readonly options: Required<Omit<AdamWOptions, 'noWeightDecay'>>;
  /** Completed updates, float32 0-dim on the parameters' device: a skip decrements it there. */
  private readonly completedSteps: Tensor;

  constructor(namedParameters: Iterable<[string, Tensor]>, options: AdamWOptions) {
    this.options = { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, ...options };
    const exempt = options.noWeightDecay ?? isBiasOrLayerNorm;
    const decay: [string, Tensor][] = [];
    const plain: [string, Tensor][] = [];
    for (const entry of trainableParameters(namedParameters, 'AdamW')) (exempt(entry[0]) ? plain : decay).push(entry);
    const group = (entries: [string, Tensor][], weightDecay: number): ParameterGroup => ({ ...zeroMoments(entries), weightDecay });
    this.groups = [group(decay, this.options.weightDecay), group(plain, 0)].filter((g) => g.params.length > 0);
    const device = this.groups[0]?.params[0].device ?? 'cpu';
    this.completedSteps = keep(zeros([], { device }));
  }

  /** Completed (not skipped) updates. Reading it waits for the device (the count lives there). */
  get stepCount(): number {
    return this.completedSteps.item();
  }

  /** One update with the gradients in .grad; `lr` overrides the learning rate (schedules). */
  step(lr = this.options.lr, options: StepOptions = {}): void {
    const [beta1, beta2] = this.options.betas;
    const foundInf = options.foundInf ?? null;
    noGrad(() => tidy(() => {
      for (const group of this.groups) {
        const withGrad = group.params.map((p, i) => ({ p, grad: p.grad, i })).filter((entry) => entry.grad !== null);
        if (withGrad.length === 0) continue;
        const pick = (list: Tensor[]) => withGrad.map(({ i }) => list[i].handle);
        const steps = withGrad.map(({ i }) => group.steps[i]);
        // As torch.optim does around the fused kernel: it reads the step count, never advances it.
        foreach.add_(steps, 1);
        callOp(fusedAdamW, withGrad.map(({ p }) => p.handle), withGrad.map(({ grad }) => grad!.handle),
          pick(group.expAvg), pick(group.expAvgSq), [], pick(group.steps),
          lr, beta1, beta2, group.weightDecay, this.options.eps, false, false, null, foundInf?.handle ?? null);
        if (foundInf) foreach.add_(steps, steps.map(() => foundInf), -1);
      }
      this.completedSteps.add_(1);
      if (foundInf) this.completedSteps.sub_(foundInf);
    }));
  }

  /** Sets every gradient to None (the next backward allocates fresh ones). */
  zeroGrad(): void {
    for (const group of this.groups) for (const p of group.params) p.grad = null;
  }

  stateTensors(): Map<string, Tensor> {
    const state = new Map<string, Tensor>();
    for (const [prefix, list] of [['exp_avg', 'expAvg'], ['exp_avg_sq', 'expAvgSq'], ['step', 'steps']] as const) {
      for (const group of this.groups) group.names.forEach((name, i) => state.set(`${prefix}/${name}`, group[list][i]));
    }
    state.set('step_count', this.completedSteps);
    return state;
  }

  /** The step count is a tensor (step_count in stateTensors), so only the kind is host state. */
  stateJson(): Record<string, unknown> {
    return { optimizer: KIND };
  }

  loadState(tensors: Map<string, Tensor>, json: Record<string, unknown>): void {
    checkOptimizerKind(json, KIND, KIND);
    const own = this.stateTensors();
    checkStateTensors(own, tensors, KIND);
    copyStateTensors(own, tensors);
  }

  dispose(): void {
    for (const group of this.groups) dispose([group.expAvg, group.expAvgSq, group.steps]);
    this.completedSteps.dispose();
  }
}
