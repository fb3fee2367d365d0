// CUDA paths. Skipped (and counted as skipped) where no GPU is present; scripts/gpu-check.sh runs
// them on a GPU machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Generator, randn, tensor, zeros, full, tidy, autocast, cudaAvailable, synchronize, manualSeed, linear, layerNorm,
  crossEntropy, scaledDotProductAttention, ampForeachNonFiniteCheckAndUnscale_, ampUpdateScale_, liveTensorCount,
  saveTensors, loadTensors, dispose, Tensor,
} from '../src';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const gpuTest = cudaAvailable() ? test : test.skip;

function relativeError(actual: Tensor, expected: Tensor): number {
  return tidy(() => {
    const a = actual.cpu().double();
    const b = expected.cpu().double();
    return a.sub(b).norm().item() / Math.max(b.norm().item(), 1e-30);
  });
}

gpuTest('tensors move between CPU and GPU and compute the same values', () => tidy(() => {
  const g = new Generator({ seed: 11 });
  const a = randn([257, 129], { generator: g });
  const b = randn([129, 65], { generator: g });
  const onGpu = a.cuda().matmul(b.cuda());
  assert.is(onGpu.device, 'cuda:0');
  const error = relativeError(onGpu, a.double().matmul(b.double()));
  assert.ok(error < 1e-3, `float32 matmul on GPU: relative error ${error}`); // tf32 may be on
  const ids = tensor([[1, 2, 3]], { dtype: 'int64', device: 'cuda' });
  assert.equal(ids.cpu().toArray(), [[1, 2, 3]]);
  synchronize();
}));

gpuTest('a training step on GPU: forward, backward, loss falls, no tensor leaks', () => {
  const g = new Generator({ seed: 5 });
  const w = randn([32, 16], { generator: g }).mul(0.1).cuda().requiresGrad_();
  const gamma = full([32], 1, { device: 'cuda', requiresGrad: true });
  const x = randn([64, 16], { generator: g }).cuda();
  const y = tensor(Array.from({ length: 64 }, (_, i) => i % 32), { dtype: 'int64' }).cuda();
  const step = () => tidy(() => {
    const loss = crossEntropy(layerNorm(linear(x, w), [32], gamma, null, 1e-7), y);
    loss.backward();
    [w, gamma].forEach((p) => { const grad = p.grad!; p.detach().sub_(grad.mul(0.5)); grad.zero_(); });
    return loss.item();
  });
  const first = step();
  const baseline = liveTensorCount();
  let last = first;
  for (let i = 0; i < 100; i++) last = step();
  assert.is(liveTensorCount(), baseline);
  assert.ok(last < first, `loss did not fall: ${first} -> ${last}`);
  dispose([w, gamma, x, y]);
});

gpuTest('CUDA autocast: float16 and bfloat16 matmuls, float32 reductions', () => tidy(() => {
  const x = randn([64, 64], { device: 'cuda' });
  const w = randn([64, 64], { device: 'cuda' });
  const reference = linear(x.double(), w.double());
  for (const dtype of ['float16', 'bfloat16'] as const) {
    const out = autocast({ device: 'cuda', dtype }, () => linear(x, w));
    assert.is(out.dtype, dtype);
    const error = relativeError(out, reference);
    assert.ok(error < 1e-2, `${dtype} autocast relative error ${error}`);
    const softmaxDtype = autocast({ device: 'cuda', dtype }, () => out.softmax(-1).dtype);
    assert.is(softmaxDtype, 'float32', 'autocast runs softmax in float32');
  }
  assert.is(linear(x, w).dtype, 'float32', 'autocast state restored');
}));

gpuTest('AMP kernels on GPU', () => tidy(() => {
  const grads = [tensor([2, 4], { dtype: 'float32', device: 'cuda' }), tensor([8, Infinity], { dtype: 'float32', device: 'cuda' })];
  const foundInf = zeros([1], { device: 'cuda' });
  ampForeachNonFiniteCheckAndUnscale_(grads, foundInf, full([1], 0.5, { device: 'cuda' }));
  assert.equal(Array.from(grads[0].cpu().toTypedArray()), [1, 2]);
  assert.is(foundInf.item(), 1);
  const scale = full([1], 1024, { device: 'cuda' });
  const tracker = zeros([1], { dtype: 'int32', device: 'cuda' });
  ampUpdateScale_(scale, tracker, foundInf, 2, 0.5, 2000);
  assert.is(scale.item(), 512);
}));

gpuTest('scaled dot-product attention with an additive mask on GPU matches the CPU', () => tidy(() => {
  const g = new Generator({ seed: 2 });
  const q = randn([2, 4, 33, 16], { generator: g });
  const mask = zeros([2, 1, 33, 33]);
  mask.select(0, 1).narrow(2, 20, 13).fill_(-1e30);
  const cpu = scaledDotProductAttention(q, q.mul(0.5), q, { mask });
  const gpu = scaledDotProductAttention(q.cuda(), q.mul(0.5).cuda(), q.cuda(), { mask: mask.cuda() });
  assert.ok(relativeError(gpu, cpu) < 1e-3);
}));

gpuTest('CUDA generators and manualSeed are reproducible; GPU tensors save to CPU files', () => tidy(() => {
  manualSeed(3);
  const a = randn([8], { device: 'cuda' }).cpu().toTypedArray();
  manualSeed(3);
  const b = randn([8], { device: 'cuda' }).cpu().toTypedArray();
  assert.equal(Array.from(a), Array.from(b));
  const g = new Generator({ device: 'cuda', seed: 9 });
  const c = randn([4], { device: 'cuda', generator: g }).cpu().toTypedArray();
  g.manualSeed(9);
  assert.equal(Array.from(randn([4], { device: 'cuda', generator: g }).cpu().toTypedArray()), Array.from(c));
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-cuda-'));
  const file = path.join(directory, 'w.bin');
  saveTensors(file, { w: randn([3], { device: 'cuda' }) });
  const loaded = loadTensors(file);
  assert.is(loaded.get('w')!.device, 'cpu');
  dispose(loaded);
  fs.rmSync(directory, { recursive: true, force: true });
}));

test('cudaAvailable() answers without a GPU', () => {
  assert.type(cudaAvailable(), 'boolean');
});

test.run();
