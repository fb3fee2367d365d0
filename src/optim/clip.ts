// Global gradient-norm clipping as TF's clip_by_global_norm (what NVIDIA's ELECTRA applies before
// LAMB): every gradient is multiplied by maxNorm / max(norm, maxNorm). Computed and applied on
// the device: the multiplier is a tensor, so there is no host read and no branch on the norm.
import { Tensor, foreach, fullLike, noGrad, stack, tidy, zeros } from '../tensor';

function presentGradients(parameters: readonly Tensor[]): Tensor[] {
  const grads: Tensor[] = [];
  for (const p of parameters) {
    const g = p.grad;
    if (g !== null) grads.push(g);
  }
  return grads;
}

function totalNorm(parameters: readonly Tensor[], grads: readonly Tensor[]): Tensor {
  if (grads.length === 0) return zeros([], { device: parameters[0]?.device ?? 'cpu' });
  return stack(foreach.norm(grads)).norm();
}

/** The L2 norm of all gradients together (parameters without a gradient count as 0), 0-dim. */
export function gradNorm(parameters: readonly Tensor[]): Tensor {
  return noGrad(() => tidy(() => totalNorm(parameters, presentGradients(parameters))));
}

/**
 * Scales the gradients in place by maxNorm / max(norm, maxNorm) and returns the norm before
 * clipping (0-dim). Below the threshold the factor is exactly 1 (maxNorm / maxNorm), so the
 * gradients are unchanged bit for bit.
 */
export function clipGradNorm(parameters: readonly Tensor[], maxNorm: number): Tensor {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be a positive number, got ${maxNorm}`);
  return noGrad(() => tidy(() => {
    const grads = presentGradients(parameters);
    const norm = totalNorm(parameters, grads);
    if (grads.length > 0) foreach.mul_(grads, fullLike(norm, maxNorm).div(norm.clamp(maxNorm)));
    return norm;
  }));
}
