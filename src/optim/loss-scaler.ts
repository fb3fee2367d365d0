// Dynamic loss scaling for float16 training, as torch.cuda.amp.GradScaler: the loss is multiplied
// by `scale` before backward; unscale() divides the gradients back and flags inf/NaN in one
// multi-tensor kernel; update() halves the scale after an overflow and doubles it after
// growthInterval clean steps. The scale, the clean-step counter and the flag stay on the device,
// so none of this reads back to the host; the optimizer consumes the flag (Optimizer.step's foundInf).
import { Tensor, ampForeachNonFiniteCheckAndUnscale_, ampUpdateScale_, full, keep, noGrad, tidy, zeros } from '../tensor';
import { checkStateTensors, copyStateTensors } from './optimizer';

export interface DynamicLossScalerOptions {
  /** Default 2**16. */
  initScale?: number;
  /** Default 2. */
  growthFactor?: number;
  /** Default 0.5. */
  backoffFactor?: number;
  /** Clean steps before the scale grows; default 2000. */
  growthInterval?: number;
  /** Disabled (float32 or bfloat16 training), the scaler is the identity and never flags a step. */
  enabled: boolean;
  /** Where the scale lives: the gradients' device. Default 'cpu'. */
  device?: string;
}

export class DynamicLossScaler {
  readonly enabled: boolean;
  private readonly device: string;
  private readonly growthFactor: number;
  private readonly backoffFactor: number;
  private readonly growthInterval: number;
  private readonly scaleTensor: Tensor;
  private readonly growthTracker: Tensor;

  constructor(options: DynamicLossScalerOptions) {
    const initScale = options.initScale ?? 2 ** 16;
    this.growthFactor = options.growthFactor ?? 2;
    this.backoffFactor = options.backoffFactor ?? 0.5;
    this.growthInterval = options.growthInterval ?? 2000;
    if (!(Number.isFinite(initScale) && initScale > 0)) throw new RangeError(`DynamicLossScaler: initScale must be positive, got ${initScale}`);
    if (!(Number.isFinite(this.growthFactor) && this.growthFactor > 1)) {
      throw new RangeError(`DynamicLossScaler: growthFactor must be above 1, got ${this.growthFactor}`);
    }
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) {
      throw new RangeError(`DynamicLossScaler: backoffFactor must lie in (0, 1), got ${this.backoffFactor}`);
    }
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval > 0)) {
      throw new RangeError(`DynamicLossScaler: growthInterval must be a positive integer, got ${this.growthInterval}`);
    }
    this.enabled = options.enabled;
    this.device = options.device ?? 'cpu';
    this.scaleTensor = keep(full([], this.enabled ? initScale : 1, { device: this.device }));
    this.growthTracker = keep(zeros([], { dtype: 'int32', device: this.device }));
  }

  /** The current scale, 0-dim float32 (the scaler's own tensor: read it, do not dispose it). */
  get scale(): Tensor {
    return this.scaleTensor;
  }

  /** loss * scale; the loss itself when disabled. */
  scaleLoss(loss: Tensor): Tensor {
    return this.enabled ? loss.mul(this.scaleTensor) : loss;
  }

  /** Divides every present gradient by the scale in place; returns a 0-dim float32 flag, 1 if any was inf or NaN. */
  unscale(parameters: readonly Tensor[]): Tensor {
    return noGrad(() => tidy(() => {
      const foundInf = zeros([], { device: this.device });
      if (!this.enabled) return foundInf;
      const grads: Tensor[] = [];
      for (const p of parameters) {
        const g = p.grad;
        if (g !== null) grads.push(g);
      }
      if (grads.length === 0) return foundInf;
      // As GradScaler: the reciprocal in float64, so a power-of-two scale unscales exactly.
      const invScale = this.scaleTensor.double().reciprocal().float();
      ampForeachNonFiniteCheckAndUnscale_(grads, foundInf, invScale);
      return foundInf;
    }));
  }

  /** Backs the scale off after an overflow (foundInf = 1), grows it after growthInterval clean steps. */
  update(foundInf: Tensor): void {
    if (!this.enabled) return;
    ampUpdateScale_(this.scaleTensor, this.growthTracker, foundInf, this.growthFactor, this.backoffFactor, this.growthInterval);
  }

  stateTensors(): Map<string, Tensor> {
    return new Map([['scale', this.scaleTensor], ['growth_tracker', this.growthTracker]]);
  }

  /** Restores stateTensors() output; throws naming the first missing, unexpected or mis-shaped key before changing anything. */
  loadState(tensors: Map<string, Tensor>): void {
    const own = this.stateTensors();
    checkStateTensors(own, tensors, 'DynamicLossScaler');
    copyStateTensors(own, tensors);
  }

  dispose(): void {
    this.scaleTensor.dispose();
    this.growthTracker.dispose();
  }
}
