// The dynamic loss scaler: overflow detection, skipped optimizer steps (LAMB and AdamW leave
// parameters, moments and step counts bitwise unchanged), back-off and growth of the scale, state
// round-trip, and a scaled training loop that equals the unscaled one bit for bit.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, keep, tidy, dispose, liveTensorCount, tensor } from '../src/tensor';
import { AdamW, DynamicLossScaler, Lamb, Optimizer, clipGradNorm } from '../src/optim';
import { makeParameters, copyParameters, backwardStep, bits, assertBitwiseEqual } from './helpers/optim-fixture';

const params = (named: [string, Tensor][]) => named.map(([, p]) => p);

function setGrads(named: [string, Tensor][], poison?: number): void {
  named.forEach(([, p], i) => tidy(() => {
    const values = new Float32Array(p.numel()).map((_, k) => Math.sin(k + i) * 0.5);
    if (poison !== undefined && i === 1) values[2] = poison;
    p.grad = tensor(values, { shape: p.shape });
  }));
}

test('unscale divides by the scale and flags inf and NaN gradients', () => {
  const named = makeParameters();
  const scaler = new DynamicLossScaler({ enabled: true, initScale: 2 ** 10 });
  setGrads(named);
  const expected = tidy(() => params(named).map((p) => keep(p.grad!.div(2 ** 10))));
  tidy(() => {
    assert.is(scaler.unscale(params(named)).item(), 0);
    params(named).forEach((p, i) => assertBitwiseEqual(p.grad!, expected[i], `unscaled grad ${i}`));
  });
  for (const poison of [Infinity, -Infinity, NaN]) {
    setGrads(named, poison);
    tidy(() => assert.is(scaler.unscale(params(named)).item(), 1, `foundInf for a ${poison} gradient`));
  }
  scaler.dispose();
  dispose([params(named), expected]);
});

function checkSkippedStep(make: (named: [string, Tensor][]) => Optimizer, what: string): void {
  const named = makeParameters();
  const optimizer = make(named);
  const scaler = new DynamicLossScaler({ enabled: true, initScale: 2 ** 8 });
  backwardStep(named, 0);
  optimizer.step(1e-2);
  const before = new Map([...optimizer.stateTensors()].map(([key, t]) => [key, bits(t)]));
  const weights = params(named).map(bits);
  setGrads(named, Infinity);
  tidy(() => {
    const foundInf = scaler.unscale(params(named));
    clipGradNorm(params(named), 1.0);
    optimizer.step(1e-2, { foundInf });
    scaler.update(foundInf);
  });
  assert.is(optimizer.stepCount, 1, `${what}: a skipped step is not counted`);
  params(named).forEach((p, i) => assert.equal(bits(p), weights[i], `${what}: parameter ${i} changed on a skipped step`));
  for (const [key, t] of optimizer.stateTensors()) assert.equal(bits(t), before.get(key), `${what}: state ${key} changed on a skipped step`);
  tidy(() => assert.is(scaler.scale.item(), 2 ** 7, `${what}: scale backed off`));
  // The next clean step goes through and counts.
  optimizer.zeroGrad();
  backwardStep(named, 1);
  tidy(() => optimizer.step(1e-2, { foundInf: scaler.unscale(params(named)) }));
  assert.is(optimizer.stepCount, 2);
  assert.not.equal(bits(params(named)[0]), weights[0], `${what}: a clean step after a skip updates`);
  optimizer.dispose();
  scaler.dispose();
  dispose(params(named));
}

test('an overflowing step is skipped by LAMB: parameters, moments and stepCount bitwise unchanged', () => {
  checkSkippedStep((named) => new Lamb(named, { lr: 1e-2, weightDecay: 0.01 }), 'Lamb');
});

test('an overflowing step is skipped by AdamW inside the fused kernel: parameters, moments, steps unchanged', () => {
  checkSkippedStep((named) => new AdamW(named, { lr: 1e-2, weightDecay: 0.01 }), 'AdamW');
});

test('the scale backs off on overflow and grows after growthInterval clean steps', () => {
  const named = makeParameters();
  const scaler = new DynamicLossScaler({ enabled: true, initScale: 1024, growthInterval: 3, growthFactor: 2, backoffFactor: 0.5 });
  const scaleAfter = (poison?: number) => tidy(() => {
    setGrads(named, poison);
    scaler.update(scaler.unscale(params(named)));
    return scaler.scale.item();
  });
  assert.equal([scaleAfter(), scaleAfter(), scaleAfter()], [1024, 1024, 2048]);
  assert.is(scaleAfter(NaN), 1024);
  // The clean-step count restarted at the overflow.
  assert.equal([scaleAfter(), scaleAfter(), scaleAfter(Infinity), scaleAfter(), scaleAfter(), scaleAfter()], [1024, 1024, 512, 512, 512, 1024]);
  scaler.dispose();
  dispose(params(named));
});

test('scaler state round-trips, and a bad key is named before anything changes', () => {
  const named = makeParameters();
  const first = new DynamicLossScaler({ enabled: true, initScale: 64, growthInterval: 4 });
  tidy(() => {
    setGrads(named);
    for (let i = 0; i < 3; i++) first.update(first.unscale(params(named)));
  });
  const saved = new Map([...first.stateTensors()].map(([key, t]) => [key, keep(tidy(() => t.clone()))]));
  const second = new DynamicLossScaler({ enabled: true, growthInterval: 4 });
  assert.throws(() => second.loadState(new Map([['scale', saved.get('scale')!]])), /missing state tensor 'growth_tracker'/);
  assert.throws(() => second.loadState(new Map([...saved, ['loss_scale', saved.get('scale')!]])), /unexpected state tensor 'loss_scale'/);
  tidy(() => assert.is(second.scale.item(), 2 ** 16, 'unchanged after failed loads'));
  second.loadState(saved);
  // One more clean step completes the interval on both: the growth tracker came across too.
  tidy(() => {
    for (const scaler of [first, second]) scaler.update(scaler.unscale(params(named)));
    assert.is(first.scale.item(), 128);
    assert.is(second.scale.item(), 128);
  });
  first.dispose();
  second.dispose();
  dispose([params(named), [...saved.values()]]);
});

test('disabled, the scaler is the identity and never flags a step', () => {
  const named = makeParameters();
  const scaler = new DynamicLossScaler({ enabled: false });
  setGrads(named, Infinity);
  const before = params(named).map((p) => tidy(() => bits(p.grad!)));
  tidy(() => {
    const loss = tensor([3.5]);
    assert.is(scaler.scaleLoss(loss), loss);
    assert.is(scaler.unscale(params(named)).item(), 0);
    scaler.update(tensor(1));
    assert.is(scaler.scale.item(), 1);
  });
  params(named).forEach((p, i) => assert.equal(tidy(() => bits(p.grad!)), before[i], 'grads untouched'));
  scaler.dispose();
  dispose(params(named));
});

test('a scaled training loop (scaleLoss, unscale, clip, step, update) equals the unscaled one bit for bit, and leaks nothing', () => {
  for (const make of [(n: [string, Tensor][]) => new Lamb(n, { lr: 6e-3, weightDecay: 0.01 }),
    (n: [string, Tensor][]) => new AdamW(n, { lr: 6e-3, weightDecay: 0.01 })]) {
    const plain = makeParameters();
    const scaled = copyParameters(plain);
    const [plainOptimizer, scaledOptimizer] = [make(plain), make(scaled)];
    // A power-of-two scale multiplies and divides gradients exactly.
    const scaler = new DynamicLossScaler({ enabled: true, initScale: 2 ** 12, growthInterval: 50 });
    let baseline = 0;
    for (let step = 0; step < 120; step++) {
      if (step === 2) baseline = liveTensorCount();
      plainOptimizer.zeroGrad();
      backwardStep(plain, step);
      tidy(() => {
        clipGradNorm(params(plain), 0.5);
        plainOptimizer.step(6e-3);
      });
      scaledOptimizer.zeroGrad();
      backwardStep(scaled, step, (loss) => scaler.scaleLoss(loss));
      tidy(() => {
        const foundInf = scaler.unscale(params(scaled));
        clipGradNorm(params(scaled), 0.5);
        scaledOptimizer.step(6e-3, { foundInf });
        scaler.update(foundInf);
      });
    }
    assert.is(liveTensorCount(), baseline, 'live tensors flat over 118 scaled steps');
    tidy(() => assert.is(scaler.scale.item(), 2 ** 14, 'grew twice over 120 clean steps'));
    plain.forEach(([name, p], i) => assertBitwiseEqual(scaled[i][1], p, `${name} with and without loss scaling`));
    for (const o of [plainOptimizer, scaledOptimizer, scaler]) o.dispose();
    dispose([params(plain), params(scaled)]);
  }
});

test.run();
