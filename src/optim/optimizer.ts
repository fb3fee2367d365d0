// What the trainer needs of an optimizer, and the bookkeeping every optimizer here shares:
// naming its parameters and checking a saved state against its own before loading it.
import { Tensor, foreach, noGrad, keep, zeros, zerosLike } from '../tensor';

export interface StepOptions {
  /** 0-dim float tensor from DynamicLossScaler.unscale: 1 skips the whole update (state untouched, step count not advanced). */
  foundInf?: Tensor;
}

export interface Optimizer {
  /** One update from each parameter's .grad (parameters whose grad is null are skipped), at learning rate lr. */
  step(lr: number, options?: StepOptions): void;
  /** Sets every gradient to null (the next backward allocates fresh ones). */
  zeroGrad(): void;
  /** Completed (not skipped) updates. */
  readonly stepCount: number;
  /** Every state tensor by a stable name (`exp_avg/<parameter name>` ...): the optimizer's own tensors, not copies. */
  stateTensors(): Map<string, Tensor>;
  /** Host-side state that is not a tensor, as plain JSON. */
  stateJson(): Record<string, unknown>;
  /**
   * Restores what stateTensors()/stateJson() gave for an optimizer over the same named parameters.
   * Throws an Error naming the first missing, unexpected or mis-shaped key before changing anything.
   */
  loadState(tensors: Map<string, Tensor>, json: Record<string, unknown>): void;
  dispose(): void;
}

/** The trainable parameters, in order; duplicate names would make the state ambiguous. */
export function trainableParameters(namedParameters: Iterable<[string, Tensor]>, who: string): [string, Tensor][] {
  const seen = new Set<string>();
  const result: [string, Tensor][] = [];
  for (const [name, parameter] of namedParameters) {
    if (seen.has(name)) throw new Error(`${who}: parameter name '${name}' appears twice`);
    seen.add(name);
    if (parameter.requiresGrad) result.push([name, parameter]);
  }
  return result;
}

/** Throws, naming the key, unless `given` holds exactly the keys of `own` with the same shapes and dtypes. */
export function checkStateTensors(own: Map<string, Tensor>, given: Map<string, Tensor>, who: string): void {
  for (const [key, tensor] of own) {
    const candidate = given.get(key);
    if (candidate === undefined) throw new Error(`${who}.loadState: missing state tensor '${key}'`);
    const [want, got] = [tensor.shape, candidate.shape];
    if (want.length !== got.length || want.some((size, i) => size !== got[i])) {
      throw new Error(`${who}.loadState: state tensor '${key}' has shape [${got.join(', ')}], expected [${want.join(', ')}]`);
    }
    if (candidate.dtype !== tensor.dtype) {
      throw new Error(`${who}.loadState: state tensor '${key}' is ${candidate.dtype}, expected ${tensor.dtype}`);
    }
  }
  for (const key of given.keys()) {
    if (!own.has(key)) throw new Error(`${who}.loadState: unexpected state tensor '${key}'`);
  }
}

/** Copies checked state into the optimizer's own tensors (which may live on another device). */
export function copyStateTensors(own: Map<string, Tensor>, given: Map<string, Tensor>): void {
  const keys = [...own.keys()];
  if (keys.length === 0) return;
  noGrad(() => foreach.copy_(keys.map((k) => own.get(k)!), keys.map((k) => given.get(k)!)));
}

/** Throws, naming the key, unless json.optimizer names this optimizer. */
export function checkOptimizerKind(json: Record<string, unknown>, kind: string, who: string): void {
  if (json.optimizer !== kind) {
    throw new Error(`${who}.loadState: state key 'optimizer' is ${JSON.stringify(json.optimizer)}, expected '${kind}'`);
  }
}

/** The Adam moments both optimizers keep per parameter, and the 0-dim step tensors their fused kernel reads. */
export interface AdamMoments {
  names: string[];
  params: Tensor[];
  expAvg: Tensor[];
  expAvgSq: Tensor[];
  steps: Tensor[];
}

/** Zeroed moments and step counts (kept: they live until the optimizer is disposed) for named parameters. */
export function zeroMoments(entries: readonly [string, Tensor][]): AdamMoments {
  return noGrad(() => ({
    names: entries.map(([name]) => name),
    params: entries.map(([, p]) => p),
    expAvg: entries.map(([, p]) => keep(zerosLike(p))),
    expAvgSq: entries.map(([, p]) => keep(zerosLike(p))),
    steps: entries.map(([, p]) => keep(zeros([], { device: p.device }))),
  }));
}
