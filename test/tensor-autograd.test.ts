// Gradients of the core ops against central finite differences (float64), plus the autograd API.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Tensor, Generator, randn, rand, tensor, tidy, grad, noGrad, enableGrad, isGradEnabled, linear, layerNorm,
  embedding, conv1d, crossEntropy, binaryCrossEntropyWithLogits, scaledDotProductAttention, einsum, zeros, ones,
} from '../src';

/**
 * Compares autograd's gradient of sum(fn(inputs) * probe) with central differences, element by
 * element, for every input that requires grad. The random probe makes every output element count.
 */
function gradcheck(name: string, fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], tolerance = 1e-6): void {
  tidy(() => {
    const probe = noGrad(() => randn(fn(...inputs).shape, { dtype: 'float64', generator: new Generator({ seed: 7 }) }));
    const objective = (...args: Tensor[]) => fn(...args).mul(probe).sum();
    const differentiable = inputs.filter((t) => t.requiresGrad);
    const analytic = grad(objective(...inputs), differentiable);
    const epsilon = 1e-6;
    differentiable.forEach((input, k) => {
      const values = input.toTypedArray() as Float64Array;
      const numeric = new Float64Array(values.length);
      for (let i = 0; i < values.length; i++) {
        numeric[i] = noGrad(() => tidy(() => {
          const shifted = (delta: number) => {
            const copy = Float64Array.from(values);
            copy[i] += delta;
            const replaced = tensor(copy, { shape: input.shape });
            return objective(...inputs.map((t) => (t === input ? replaced : t))).item();
          };
          return (shifted(epsilon) - shifted(-epsilon)) / (2 * epsilon);
        }));
      }
      const exact = analytic[k]!.toTypedArray() as Float64Array;
      let worst = 0;
      for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(exact[i] - numeric[i]) / Math.max(1, Math.abs(numeric[i])));
      assert.ok(worst < tolerance, `${name}: input ${k} gradient differs from finite differences by ${worst}`);
    });
  });
}

const g = new Generator({ seed: 1234 });
const leaf = (shape: number[], scale = 1) => randn(shape, { dtype: 'float64', generator: g }).mul(scale).requiresGrad_();

test('elementwise and reduction ops', () => {
  gradcheck('mul/add/sub/div', (a, b) => a.mul(b).add(a).sub(b.mul(0.5)).div(b.abs().add(1)), [leaf([3, 4]), leaf([3, 4])]);
  gradcheck('exp/log/sqrt/pow', (a) => a.exp().add(a.abs().add(1).log()).add(a.abs().add(0.5).sqrt()).add(a.pow(3)), [leaf([2, 5])]);
  gradcheck('tanh/sigmoid/gelu/relu', (a) => a.tanh().add(a.sigmoid()).add(a.gelu()).add(a.gelu('tanh')), [leaf([4, 3])]);
  gradcheck('softmax/logSoftmax', (a) => a.softmax(-1).add(a.logSoftmax(0)), [leaf([3, 5])]);
  gradcheck('sum/mean/max/norm/logsumexp', (a) => a.sum(1).add(a.mean(1)).add(a.max(1).values).add(a.norm(2, 1)).add(a.logsumexp(1)), [leaf([3, 4])]);
  gradcheck('rsqrt/clamp/where', (a) => a.abs().add(1).rsqrt().add(a.clamp(-0.3, 0.3)).add(a.maskedFill(a.gt(0), 0)), [leaf([4, 4])]);
});

test('linear algebra and shape ops', () => {
  gradcheck('matmul/bmm', (a, b) => a.matmul(b).add(a.bmm(b)), [leaf([2, 3, 4]), leaf([2, 4, 2])]);
  gradcheck('linear', (x, w, b) => linear(x, w, b), [leaf([3, 4]), leaf([5, 4]), leaf([5])]);
  gradcheck('einsum', (a, b) => einsum('bhid,bhjd->bhij', a, b), [leaf([1, 2, 3, 4]), leaf([1, 2, 3, 4])]);
  gradcheck('transpose/permute/reshape/cat/split', (a) => {
    const [p, q] = a.permute(1, 0, 2).reshape(4, 6).split(3, 1);
    return p.t().matmul(q).add(a.transpose(0, 1).reshape(6, 4).t().sum()).flatten();
  }, [leaf([3, 4, 2])]);
  gradcheck('gather/indexSelect', (a) => a.gather(1, tensor([[0, 2], [1, 1], [3, 0]], { dtype: 'int64' }))
    .add(a.indexSelect(1, tensor([3, 1], { dtype: 'int64' }))), [leaf([3, 4])]);
});

test('nn.functional ops', () => {
  gradcheck('layerNorm', (x, w, b) => layerNorm(x, [4], w, b, 1e-7), [leaf([3, 4]), leaf([4]), leaf([4])], 1e-5);
  gradcheck('embedding', (w) => embedding(w, tensor([[0, 3], [3, 1]], { dtype: 'int64' })), [leaf([4, 3])]);
  gradcheck('conv1d', (x, w, b) => conv1d(x, w, b, { padding: 1 }), [leaf([2, 3, 5]), leaf([3, 3, 3]), leaf([3])]);
  const target = tensor([1, -100, 2, 0], { dtype: 'int64' });
  gradcheck('crossEntropy', (x) => crossEntropy(x, target), [leaf([4, 3])]);
  const labels = noGrad(() => rand([3, 4], { dtype: 'float64', generator: g }).gt(0.5).double());
  gradcheck('bceWithLogits', (x) => binaryCrossEntropyWithLogits(x, labels), [leaf([3, 4])]);
  const mask = tidy(() => zeros([1, 1, 3, 3], { dtype: 'float64' }).maskedFill(tensor([[false, false, true]]).expand(3, 3), -1e9));
  gradcheck('scaledDotProductAttention with additive mask', (q, k, v) => scaledDotProductAttention(q, k, v, { mask }),
    [leaf([1, 2, 3, 4]), leaf([1, 2, 3, 4]), leaf([1, 2, 3, 4])]);
});

test('backward accumulates into .grad; explicit gradients; retainGraph', () => tidy(() => {
  const w = tensor([1, 2, 3], { dtype: 'float64', requiresGrad: true });
  const y = w.mul(w);
  y.backward(ones([3], { dtype: 'float64' }), { retainGraph: true });
  assert.equal(Array.from(w.grad!.toTypedArray()), [2, 4, 6]);
  y.backward(tensor([1, 0, 1], { dtype: 'float64' }));
  assert.equal(Array.from(w.grad!.toTypedArray()), [4, 4, 12]);
  assert.throws(() => y.backward(ones([3], { dtype: 'float64' })), /backward through the graph a second time/);
  w.grad = null;
  assert.is(w.grad, null);
  assert.ok(w.isLeaf);
  assert.not.ok(y.isLeaf);
  assert.ok(y.requiresGrad);
  assert.not.ok(y.detach().requiresGrad);
}));

test('noGrad and enableGrad nest and restore, also on exceptions', () => tidy(() => {
  const w = tensor([1, 2], { requiresGrad: true });
  assert.ok(isGradEnabled());
  noGrad(() => {
    assert.not.ok(w.mul(2).requiresGrad);
    enableGrad(() => assert.ok(w.mul(2).requiresGrad));
    assert.not.ok(isGradEnabled());
  });
  assert.throws(() => noGrad(() => { throw new Error('boom'); }), /boom/);
  assert.ok(isGradEnabled());
  const [unused] = grad(w.sum(), [tensor([1], { requiresGrad: true })], { allowUnused: true });
  assert.is(unused, null);
}));

test.run();
