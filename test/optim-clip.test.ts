// Global-norm clipping against torch's norm-of-norms with TF's clip_by_global_norm factor
// (max / max(norm, max)), below and above the threshold (test/python/optim_reference.py).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, keep, tidy, dispose, tensor, zeros, liveTensorCount } from '../src/tensor';
import { clipGradNorm, gradNorm } from '../src/optim';
import { runPython, pythonScript } from './helpers/python';
import { bits } from './helpers/optim-fixture';

const SHAPES = [[4, 3], [4], [2, 2, 5]];
const gradValues = SHAPES.map((shape, i) =>
  Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, k) => Math.fround(Math.sin(1.7 * k + i) * (i + 1))));

function parametersWithGrads(): Tensor[] {
  return SHAPES.map((shape, i) => {
    const p = keep(zeros(shape).requiresGrad_());
    tidy(() => { p.grad = tensor(new Float32Array(gradValues[i]), { shape }); });
    return p;
  });
}

test('clipGradNorm matches the reference below and above the threshold, returning the norm before clipping', () => {
  const probe = parametersWithGrads();
  const norm = tidy(() => gradNorm(probe).item());
  dispose(probe);
  const [below, above] = [norm * 1.5, norm / 3];
  const expected = JSON.parse(runPython([pythonScript('optim_reference.py'), 'clip'],
    { input: JSON.stringify({ grads: gradValues, max_norms: [below, above] }) }).stdout) as { total_norm: number; clipped: number[][][] };
  assert.ok(Math.abs(norm - expected.total_norm) <= 1e-6 * expected.total_norm, `gradNorm ${norm} vs ${expected.total_norm}`);

  [below, above].forEach((maxNorm, case_) => {
    const parameters = parametersWithGrads();
    const before = parameters.map((p) => tidy(() => bits(p.grad!)));
    tidy(() => {
      const total = clipGradNorm(parameters, maxNorm);
      assert.equal(total.shape, []);
      assert.ok(Math.abs(total.item() - expected.total_norm) <= 1e-6 * expected.total_norm, 'norm before clipping');
      parameters.forEach((p, i) => {
        const actual = Array.from(p.grad!.toTypedArray() as Float32Array);
        actual.forEach((v, k) => assert.ok(Math.abs(v - expected.clipped[case_][i][k]) <= 1e-6,
          `max ${maxNorm}: grad ${i}[${k}] ${v} vs ${expected.clipped[case_][i][k]}`));
      });
      if (maxNorm === below) parameters.forEach((p, i) => assert.equal(bits(p.grad!), before[i], 'below the threshold: bitwise unchanged'));
      else assert.ok(Math.abs(gradNorm(parameters).item() - maxNorm) <= 1e-5 * maxNorm, 'above: clipped to maxNorm');
    });
    dispose(parameters);
  });
});

test('parameters without a gradient are skipped; no gradient at all gives 0; bad maxNorm is refused', () => {
  const parameters = parametersWithGrads();
  const without = keep(zeros([3]).requiresGrad_());
  tidy(() => {
    const withNone = gradNorm([...parameters, without]).item();
    assert.is(withNone, gradNorm(parameters).item());
    assert.is(clipGradNorm([without], 1).item(), 0);
  });
  assert.throws(() => clipGradNorm(parameters, 0), /maxNorm must be a positive number, got 0/);
  assert.throws(() => clipGradNorm(parameters, NaN), /maxNorm must be a positive number/);
  const baseline = liveTensorCount();
  for (let i = 0; i < 50; i++) tidy(() => { clipGradNorm(parameters, 0.1); });
  assert.is(liveTensorCount(), baseline);
  dispose([parameters, without]);
});

test.run();
