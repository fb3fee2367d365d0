// A few named parameters and a deterministic loss, shared by the optimizer tests: enough shapes to
// exercise parameter groups (a weight, a bias, a LayerNorm weight) without a model.
import * as assert from 'uvu/assert';
import { Tensor, arange, keep, tidy, linear, noGrad, dispose } from '../../src/tensor';
import type { Optimizer } from '../../src/optim';

export function makeParameters(): [string, Tensor][] {
  const values = (n: number, scale: number, phase: number) =>
    tidy(() => arange(n, undefined, 1, { dtype: 'float32' }).mul(scale).add(phase).sin());
  return [
    ['dense.weight', keep(values(12, 0.3, 0.1).reshape(4, 3).requiresGrad_())],
    ['dense.bias', keep(values(4, 0.9, 0.5).mul(0.1).requiresGrad_())],
    ['LayerNorm.weight', keep(values(4, 0.2, 1.2).requiresGrad_())],
  ];
}

/** Fresh leaf copies of the parameters, values bitwise equal. */
export function copyParameters(named: [string, Tensor][]): [string, Tensor][] {
  return named.map(([name, p]) => [name, keep(noGrad(() => tidy(() => p.detach().clone())).requiresGrad_())]);
}

/** Forward and backward of a small loss that depends on `step` (through `transform`, e.g. a loss scaler), leaving gradients in .grad. */
export function backwardStep(named: [string, Tensor][], step: number, transform: (loss: Tensor) => Tensor = (loss) => loss): void {
  const [w, b, gamma] = named.map(([, p]) => p);
  tidy(() => {
    const x = arange(15, undefined, 1, { dtype: 'float32' }).mul(0.7).add(step * 0.37).cos().reshape(5, 3);
    transform(linear(x, w, b).mul(gamma).tanh().sub(0.3).pow(2).sum()).backward();
  });
}

export function bits(t: Tensor): Uint8Array {
  return tidy(() => new Uint8Array((t.detach().contiguous().toTypedArray() as Float32Array).buffer.slice(0)));
}

export function assertBitwiseEqual(actual: Tensor, expected: Tensor, what: string): void {
  const [a, b] = [bits(actual), bits(expected)];
  assert.is(a.length, b.length, `${what}: sizes differ`);
  const first = a.findIndex((byte, i) => byte !== b[i]);
  assert.ok(first < 0, `${what}: differs at byte ${first}`);
}

/** Checkpoint copies of an optimizer's state (its own tensors are live and would keep changing). */
export function snapshotState(optimizer: Optimizer): { tensors: Map<string, Tensor>; json: Record<string, unknown> } {
  const tensors = new Map<string, Tensor>();
  for (const [key, t] of optimizer.stateTensors()) tensors.set(key, keep(tidy(() => t.clone())));
  return { tensors, json: JSON.parse(JSON.stringify(optimizer.stateJson())) };
}

/**
 * Trains 3 steps, saves the state, builds a second optimizer over fresh copies of the parameters,
 * loads the state into it, then trains both 3 more steps: parameters and state must agree bit for bit.
 */
export function checkStateRoundTrip(make: (named: [string, Tensor][]) => Optimizer, lrAt: (step: number) => number): void {
  const original = makeParameters();
  const first = make(original);
  for (let step = 0; step < 3; step++) {
    first.zeroGrad();
    backwardStep(original, step);
    first.step(lrAt(step));
  }
  const saved = snapshotState(first);
  const copies = copyParameters(original);
  const second = make(copies);
  second.loadState(saved.tensors, saved.json);
  assert.is(second.stepCount, 3, 'stepCount restored');
  for (let step = 3; step < 6; step++) {
    for (const [optimizer, named] of [[first, original], [second, copies]] as const) {
      optimizer.zeroGrad();
      backwardStep(named, step);
      optimizer.step(lrAt(step));
    }
  }
  original.forEach(([name, p], i) => assertBitwiseEqual(copies[i][1], p, `parameter ${name} after resuming`));
  const [stateA, stateB] = [first.stateTensors(), second.stateTensors()];
  assert.equal([...stateB.keys()], [...stateA.keys()]);
  for (const [key, t] of stateA) assertBitwiseEqual(stateB.get(key)!, t, `state ${key} after resuming`);
  assert.is(second.stepCount, 6);
  first.dispose();
  second.dispose();
  dispose([original.map(([, p]) => p), copies.map(([, p]) => p), [...saved.tensors.values()]]);
}
