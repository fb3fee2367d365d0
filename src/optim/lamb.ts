// LAMB (You et al., "Large Batch Optimization for Deep Learning") as NVIDIA's TF2 ELECTRA runs it:
// tensorflow_addons' LAMB, which CamemBERTa's recipe follows. Per parameter w with gradient g, at
// the optimizer's global step t (Keras counts one per apply_gradients, so a parameter without a
// gradient on some steps is bias-corrected by the global count, not by its own):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd w          (wd only where not excluded)
//   r = ||w|| / ||u||, 1 where either norm is 0                          (only where not excluded)
//   w -= lr r u
// Each parameter group is updated by a fixed number of multi-tensor calls (libtorch's fused Adam
// kernel for the moments and m_hat / (sqrt(v_hat) + eps), then _foreach_ ops); the trust ratios
// are computed for the whole group as one vector, so nothing reads back to the host.
import { Tensor, aten, callOp, emptyLike, foreach, noGrad, stack, tidy, where, dispose } from '../tensor';
import { isBiasOrLayerNorm } from './adamw';
import { AdamMoments, Optimizer, StepOptions, zeroMoments, checkOptimizerKind, checkStateTensors, copyStateTensors, trainableParameters } from './optimizer';

const fusedAdam = aten('_fused_adam_');

function handles(tensors: readonly Tensor[]): number[] {
  return tensors.map((t) => t.handle);
}

export interface LambOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Names excluded from weight decay AND from the layer adaptation (trust ratio); default isBiasOrLayerNorm. */
  excludeFromDecayAndAdaptation?: (name: string) => boolean;
}

/** `steps` hold the global step (what the fused kernel reads), derived from stepCount, not saved. */
interface LambGroup extends AdamMoments {
  /** Weight decay and trust ratio both apply (the two exclusions are one list in CamemBERTa's recipe). */
  adapted: boolean;
}

const KIND = 'Lamb';

export class Lamb implements Optimizer {
  private readonly groups: LambGroup[];
  private readonly betas: [number, number];
  private readonly eps: number;
  private readonly weightDecay: number;
  private completedSteps = 0;

  constructor(namedParameters: Iterable<[string, Tensor]>, options: LambOptions) {
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-6;
    this.weightDecay = options.weightDecay ?? 0;
    const [beta1, beta2] = this.betas;
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
      throw new RangeError(`Lamb: betas must lie in [0, 1), got [${this.betas.join(', ')}]`);
    }
    if (!(this.eps > 0)) throw new RangeError(`Lamb: eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new RangeError(`Lamb: weightDecay must be >= 0, got ${this.weightDecay}`);
    const excluded = options.excludeFromDecayAndAdaptation ?? isBiasOrLayerNorm;
    const adapted: [string, Tensor][] = [];
    const plain: [string, Tensor][] = [];
    for (const [name, parameter] of trainableParameters(namedParameters, 'Lamb')) {
      if (parameter.dtype !== 'float32') {
        throw new TypeError(`Lamb: parameter '${name}' is ${parameter.dtype}; LAMB keeps float32 master weights`);
      }
      (excluded(name) ? plain : adapted).push([name, parameter]);
    }
    const group = (entries: [string, Tensor][], isAdapted: boolean): LambGroup => ({ ...zeroMoments(entries), adapted: isAdapted });
    this.groups = [group(adapted, true), group(plain, false)].filter((g) => g.params.length > 0);
  }

  get stepCount(): number {
    return this.completedSteps;
  }

  step(lr: number, options: StepOptions = {}): void {
    if (!Number.isFinite(lr) || lr < 0) throw new RangeError(`Lamb.step: lr must be a finite number >= 0, got ${lr}`);
    // The one host read of a step: the step count lives on the host.
    if (options.foundInf !== undefined && options.foundInf.item() !== 0) return;
    const t = this.completedSteps + 1;
    noGrad(() => tidy(() => {
      for (const group of this.groups) {
        foreach.add_(group.steps, 1);
        this.updateGroup(group, lr);
      }
    }));
    this.completedSteps = t;
  }

  private updateGroup(group: LambGroup, lr: number): void {
    const [beta1, beta2] = this.betas;
    const present: number[] = [];
    const grads: Tensor[] = [];
    group.params.forEach((p, i) => {
      const g = p.grad;
      if (g === null) return;
      present.push(i);
      grads.push(g);
    });
    if (present.length === 0) return;
    const pick = (list: Tensor[]) => present.map((i) => list[i]);
    const [params, expAvg, expAvgSq] = [pick(group.params), pick(group.expAvg), pick(group.expAvgSq)];
    // libtorch's fused Adam kernel computes exactly LAMB's first half in one pass over each tensor:
    // m, v and, into its "parameter", -lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections
    // read from `steps` (the global step here). Excluded parameters take that step directly.
    const steps = pick(group.steps);
    if (!group.adapted) {
      callOp(fusedAdam, handles(params), handles(grads), handles(expAvg), handles(expAvgSq), [], handles(steps),
        lr, beta1, beta2, 0, this.eps, false, false, null, null);
      return;
    }
    // Adapted ones need the update as a tensor (for its norm): the same kernel with lr = -1 adds
    // it to a zeroed buffer.
    const update = params.map((p) => emptyLike(p));
    foreach.zero_(update);
    callOp(fusedAdam, handles(update), handles(grads), handles(expAvg), handles(expAvgSq), [], handles(steps),
      -1, beta1, beta2, 0, this.eps, false, false, null, null);
    if (this.weightDecay !== 0) foreach.add_(update, params, this.weightDecay);
    const norms = stack(foreach.norm([...params, ...update]));
    const weightNorms = norms.narrow(0, 0, params.length);
    const updateNorms = norms.narrow(0, params.length, params.length);
    const ratios = where(weightNorms.gt(0).logicalAnd(updateNorms.gt(0)), weightNorms.div(updateNorms), 1);
    foreach.addcmul_(params, update, ratios.unbind(0), -lr);
  }

  zeroGrad(): void {
    for (const group of this.groups) for (const p of group.params) p.grad = null;
  }

  stateTensors(): Map<string, Tensor> {
    const state = new Map<string, Tensor>();
    for (const group of this.groups) group.names.forEach((name, i) => state.set(`exp_avg/${name}`, group.expAvg[i]));
    for (const group of this.groups) group.names.forEach((name, i) => state.set(`exp_avg_sq/${name}`, group.expAvgSq[i]));
    return state;
  }

  stateJson(): Record<string, unknown> {
    return { optimizer: KIND, stepCount: this.completedSteps };
  }

  loadState(tensors: Map<string, Tensor>, json: Record<string, unknown>): void {
    checkOptimizerKind(json, KIND, KIND);
    const stepCount = json.stepCount;
    if (typeof stepCount !== 'number' || !Number.isInteger(stepCount) || stepCount < 0) {
      throw new Error(`Lamb.loadState: state key 'stepCount' must be a non-negative integer, got ${JSON.stringify(stepCount)}`);
    }
    const own = this.stateTensors();
    checkStateTensors(own, tensors, KIND);
    copyStateTensors(own, tensors);
    this.completedSteps = stepCount;
    noGrad(() => {
      for (const group of this.groups) {
        foreach.zero_(group.steps);
        foreach.add_(group.steps, stepCount);
      }
    });
  }

  dispose(): void {
    for (const group of this.groups) dispose([group.expAvg, group.expAvgSq, group.steps]);
  }
}
