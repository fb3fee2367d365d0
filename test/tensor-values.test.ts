// Op values against Python torch (test/python/tensor_reference.py writes them with torch.save,
// which also exercises our reader of files Python wrote).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Tensor, tensor, linspace, arange, zeros, cat, stack, where, einsum, linear, layerNorm, embedding, conv1d,
  crossEntropy, binaryCrossEntropyWithLogits, scaledDotProductAttention, loadTensors, tidy, dispose, full,
} from '../src';
import { runPython, pythonScript } from './helpers/python';

const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-values-'));
const referenceFile = path.join(directory, 'reference.pt');
runPython([pythonScript('tensor_reference.py'), referenceFile]);
const reference = loadTensors(referenceFile);

function maxAbsDifference(actual: Tensor, expected: Tensor): number {
  return tidy(() => actual.double().sub(expected.double()).abs().max().item());
}

function check(name: string, actual: Tensor, tolerance = 1e-6): void {
  const expected = reference.get(name);
  assert.ok(expected, `reference has no '${name}'`);
  assert.equal(actual.shape, expected!.shape, `${name}: shape`);
  assert.is(actual.dtype, expected!.dtype, `${name}: dtype`);
  const error = maxAbsDifference(actual, expected!);
  assert.ok(error <= tolerance, `${name}: max abs error ${error} > ${tolerance}`);
}

function inputs() {
  const x = linspace(-2, 2, 24).reshape(2, 3, 4);
  const y = arange(24, undefined, 1, { dtype: 'float32' }).cos().reshape(2, 4, 3);
  const w = arange(20, undefined, 1, { dtype: 'float32' }).mul(0.7).sin().reshape(5, 4);
  const b = linspace(-0.5, 0.5, 5);
  const ids = tensor([[0, 4, 2], [1, 1, 3]], { dtype: 'int64' });
  const target = tensor([1, -100, 3, 0, 4, 2], { dtype: 'int64' });
  return { x, y, w, b, ids, target };
}

test('elementwise, reductions and shapes match torch', () => tidy(() => {
  const { x, y } = inputs();
  check('softmax', x.softmax(-1));
  check('log_softmax', x.logSoftmax(1));
  check('gelu', x.gelu());
  check('gelu_tanh', x.gelu('tanh'));
  check('tanh', x.tanh());
  check('sigmoid', x.sigmoid());
  check('exp', x.exp());
  check('log', x.abs().add(1).log());
  check('log1p', x.abs().log1p());
  check('sqrt', x.abs().sqrt());
  check('rsqrt', x.abs().add(1).rsqrt());
  check('pow3', x.pow(3), 1e-5);
  check('masked_fill', x.maskedFill(x.gt(0.5), -1));
  check('where', where(x.gt(0), x, y.transpose(1, 2)));
  check('clamp', x.clamp(-0.5, 0.75));
  check('cat', cat([x, x.mul(2)], 1));
  check('stack', stack([x, x.neg()], 0));
  check('cumsum', x.cumsum(2), 1e-6);
  check('sum_dims', x.sum([0, 2], true), 1e-6);
  check('mean_dim', x.mean(1));
  check('max_values', x.max(2).values);
  check('argmax', y.argmax(1));
  check('norm', x.norm(), 1e-5);
  check('norm_dim', x.norm(1, 2), 1e-6);
  check('logsumexp', x.logsumexp(2));
  check('topk_values', x.topk(2, 2).values);
  check('topk_indices', x.topk(2, 2).indices);
  check('permute', x.permute(2, 0, 1).contiguous());
  check('split1', x.split(2, 2)[1].contiguous());
  check('div_floor', x.mul(3).div(2, 'floor'));
  check('bf16_roundtrip', x.to('bfloat16'));
}));

test('linear algebra and nn.functional ops match torch', () => tidy(() => {
  const { x, y, w, b, ids, target } = inputs();
  check('matmul', x.matmul(y), 1e-5);
  check('bmm', x.bmm(y), 1e-5);
  check('einsum', einsum('bij,bjk->bik', x, y), 1e-5);
  check('linear', linear(x, w, b), 1e-5);
  check('layer_norm', layerNorm(x, [4], w.select(0, 0), w.select(0, 1), 1e-7), 1e-5);
  check('embedding', embedding(w, ids));
  const kernel = arange(36, undefined, 1, { dtype: 'float32' }).sin().reshape(3, 3, 4).slice(2, 0, 3).contiguous();
  check('conv1d', conv1d(x, kernel, b.slice(0, 0, 3), { padding: 1 }), 1e-5);
  check('gather', x.gather(2, tensor([[[3, 0], [1, 1], [2, 3]], [[0, 0], [3, 2], [1, 0]]], { dtype: 'int64' })));
  check('scatter', zeros([2, 3, 4]).scatter(2, tensor([[[3], [1], [2]], [[0], [3], [1]]], { dtype: 'int64' }), 7));
  check('index_select', x.indexSelect(1, tensor([2, 0], { dtype: 'int64' })));
  const logits = x.reshape(6, 4).matmul(w.t());
  check('cross_entropy_mean', crossEntropy(logits, target), 1e-5);
  check('cross_entropy_sum', crossEntropy(logits, target, { reduction: 'sum' }), 1e-5);
  check('cross_entropy_none', crossEntropy(logits, target, { reduction: 'none' }), 1e-5);
  check('bce_with_logits', binaryCrossEntropyWithLogits(y, y.gt(0).float()), 1e-6);
  const mask = zeros([2, 1, 3, 3]);
  mask.select(0, 1).select(2, 2).fill_(-3.4028234663852886e38);
  const q = x.slice(2, 0, 2).unsqueeze(1).contiguous();
  check('sdpa', scaledDotProductAttention(q, q.mul(0.5), q.add(1), { mask }), 1e-5);
  check('one_hot', ids.oneHot(5));
}));

test('nested arrays and typed arrays round-trip', () => tidy(() => {
  const t = tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'int32' });
  assert.equal(t.shape, [2, 3]);
  assert.equal(Array.from(t.toTypedArray()), [1, 2, 3, 4, 5, 6]);
  assert.equal(t.toArray(), [[1, 2, 3], [4, 5, 6]]);
  const big = tensor(new BigInt64Array([2n ** 40n, -3n]), { dtype: 'int64' });
  assert.is(big.dtype, 'int64');
  assert.equal(Array.from(big.toTypedArray()), [2n ** 40n, -3n]);
  assert.is(tensor([true, false]).dtype, 'bool');
  assert.is(full([2], 0.5, { dtype: 'float64' }).sum().item(), 1);
  assert.is(tensor([1.5, 2.25], { dtype: 'bfloat16' }).float().sum().item(), 3.75);
  assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
}));

test.after(() => {
  dispose([...reference.values()]);
  fs.rmSync(directory, { recursive: true, force: true });
});

test.run();
