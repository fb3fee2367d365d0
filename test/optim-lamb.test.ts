// LAMB against a plain-PyTorch transcription of tensorflow_addons' LAMB (the optimizer NVIDIA's TF2
// ELECTRA uses: test/python/optim_reference.py), state round-trips, and no leaked tensors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, tensor, keep, tidy, dispose, liveTensorCount, zeros } from '../src/tensor';
import { Lamb, learningRate } from '../src/optim';
import { runPython, pythonScript } from './helpers/python';
import { makeParameters, backwardStep, checkStateRoundTrip, snapshotState, bits } from './helpers/optim-fixture';

// CamemBERTa's LAMB settings; the learning rate is raised from 6e-3 so that 20 steps move the
// parameters far enough for any deviation from the reference to show.
const BETAS: [number, number] = [0.878, 0.974];
const EPS = 1e-6;
const WEIGHT_DECAY = 0.01;
const schedule = { peakLr: 0.05, warmupSteps: 4, totalSteps: 20, decay: 'polynomial' as const, power: 0.5 };

const SHAPES: Record<string, number[]> = {
  'encoder.layer.0.dense.weight': [4, 3],
  'encoder.layer.0.dense.bias': [4],
  'encoder.layer.0.LayerNorm.weight': [4],
  'embeddings.word_embeddings.weight': [5, 2],   // no gradient on steps 1, 4, 7, ...
  'head.projection.weight': [2, 2, 3],           // starts at zero: ||w|| = 0 takes the trust-ratio fallback
};
const EXCLUDED = ['encoder.layer.0.dense.bias', 'encoder.layer.0.LayerNorm.weight'];
const SOMETIMES_WITHOUT_GRAD = 'embeddings.word_embeddings.weight';
const STEPS = 20;

function initialValues(name: string, index: number): number[] {
  const n = SHAPES[name].reduce((a, b) => a * b, 1);
  if (name === 'head.projection.weight') return new Array(n).fill(0);
  return Array.from({ length: n }, (_, i) => Math.fround(Math.sin(0.7 * i + index) * (index + 1) * 0.3));
}

function gradientValues(name: string, index: number, step: number): number[] | null {
  if (name === SOMETIMES_WITHOUT_GRAD && step % 3 === 1) return null;
  const n = SHAPES[name].reduce((a, b) => a * b, 1);
  // Magnitudes that differ by parameter and drift over steps, so the moments and ratios vary.
  return Array.from({ length: n }, (_, i) => Math.fround(Math.cos(1.3 * i + 0.4 * step + index) * 10 ** (index % 3 - 1) * (1 + 0.1 * step)));
}

test('LAMB matches the tensorflow_addons LAMB transcription over 20 steps (decay and trust ratio exclusions, null grads, zero weights)', () => {
  const names = Object.keys(SHAPES);
  const lrs = Array.from({ length: STEPS }, (_, step) => learningRate(schedule, step));
  const spec = {
    betas: BETAS, eps: EPS, weight_decay: WEIGHT_DECAY, excluded: EXCLUDED, shapes: SHAPES, lrs,
    params: Object.fromEntries(names.map((name, i) => [name, initialValues(name, i)])),
    grads: lrs.map((_, step) => Object.fromEntries(names.map((name, i) => [name, gradientValues(name, i, step)]))),
  };
  const expected = JSON.parse(runPython([pythonScript('optim_reference.py'), 'lamb'], { input: JSON.stringify(spec) }).stdout) as
    { params: Record<string, number[]> };

  const named: [string, Tensor][] = names.map((name, i) =>
    [name, keep(tensor(new Float32Array(initialValues(name, i)), { shape: SHAPES[name] }).requiresGrad_())]);
  const optimizer = new Lamb(named, { lr: schedule.peakLr, betas: BETAS, eps: EPS, weightDecay: WEIGHT_DECAY });
  for (let step = 0; step < STEPS; step++) {
    named.forEach(([name, p], i) => tidy(() => {
      const g = gradientValues(name, i, step);
      p.grad = g === null ? null : tensor(new Float32Array(g), { shape: SHAPES[name] });
    }));
    optimizer.step(lrs[step]);
  }
  assert.is(optimizer.stepCount, STEPS);
  for (const [name, p] of named) {
    const actual = Array.from(tidy(() => p.detach().toTypedArray()) as Float32Array);
    const initial = initialValues(name, names.indexOf(name));
    const moved = Math.max(...actual.map((v, i) => Math.abs(v - initial[i])));
    assert.ok(moved > 1e-3, `${name} barely moved (${moved}): the comparison would prove little`);
    actual.forEach((v, i) => assert.ok(Math.abs(v - expected.params[name][i]) < 1e-6,
      `${name}[${i}]: ${v} vs reference ${expected.params[name][i]}`));
  }
  optimizer.dispose();
  dispose(named.map(([, p]) => p));
});

test('LAMB state round-trips: resumed training is bitwise identical', () => {
  checkStateRoundTrip((named) => new Lamb(named, { lr: 6e-3, betas: BETAS, eps: EPS, weightDecay: WEIGHT_DECAY }),
    (step) => learningRate({ ...schedule, peakLr: 6e-3 }, step + 1));
});

test('LAMB.loadState names the first bad key and changes nothing', () => {
  const named = makeParameters();
  const optimizer = new Lamb(named, { lr: 6e-3 });
  backwardStep(named, 0);
  optimizer.step(6e-3);
  const saved = snapshotState(optimizer);
  const before = [...optimizer.stateTensors()].map(([key, t]) => [key, bits(t)] as const);
  const attempt = (tensors: Map<string, Tensor>, json: Record<string, unknown>, message: RegExp) => {
    assert.throws(() => optimizer.loadState(tensors, json), message);
    for (const [key, b] of before) assert.equal(bits(optimizer.stateTensors().get(key)!), b, `${key} changed by a failed load`);
    assert.is(optimizer.stepCount, 1);
  };
  const missing = new Map(saved.tensors);
  missing.delete('exp_avg_sq/dense.bias');
  attempt(missing, saved.json, /missing state tensor 'exp_avg_sq\/dense\.bias'/);
  const misShaped = new Map(saved.tensors);
  const wrong = keep(zeros([3, 4]));
  misShaped.set('exp_avg/dense.weight', wrong);
  attempt(misShaped, { ...saved.json, stepCount: 7 }, /'exp_avg\/dense\.weight' has shape \[3, 4\], expected \[4, 3\]/);
  const unexpected = new Map(saved.tensors);
  unexpected.set('exp_avg/decoder.weight', wrong);
  attempt(unexpected, saved.json, /unexpected state tensor 'exp_avg\/decoder\.weight'/);
  attempt(saved.tensors, { optimizer: 'AdamW' }, /'optimizer' is "AdamW", expected 'Lamb'/);
  attempt(saved.tensors, { optimizer: 'Lamb', stepCount: -1 }, /'stepCount' must be a non-negative integer/);
  optimizer.dispose();
  dispose([named.map(([, p]) => p), [...saved.tensors.values()], wrong]);
});

test('LAMB leaks no tensor over 300 steps', () => {
  const named = makeParameters();
  const optimizer = new Lamb(named, { lr: 6e-3, betas: BETAS, weightDecay: WEIGHT_DECAY });
  const run = (from: number, to: number) => {
    for (let step = from; step < to; step++) {
      optimizer.zeroGrad();
      backwardStep(named, step);
      optimizer.step(6e-3);
    }
  };
  run(0, 2);
  const baseline = liveTensorCount();
  run(2, 300);
  assert.is(liveTensorCount(), baseline);
  optimizer.dispose();
  dispose(named.map(([, p]) => p));
});

test('LAMB refuses non-float32 parameters and duplicate names, naming them', () => {
  const half = keep(zeros([2], { dtype: 'bfloat16' }).requiresGrad_());
  assert.throws(() => new Lamb([['dense.weight', half]], { lr: 1e-3 }), /parameter 'dense\.weight' is bfloat16/);
  const w = keep(zeros([2]).requiresGrad_());
  assert.throws(() => new Lamb([['w', w], ['w', w]], { lr: 1e-3 }), /'w' appears twice/);
  dispose([half, w]);
});

test.run();
