// Seeds, generators, threads, autocast, CUDA availability, and the torch.save format.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Generator, rand, randn, randint, tensor, zeros, tidy, manualSeed, setNumThreads, getNumThreads, autocast,
  cudaAvailable, builtWithCuda, deviceCount, synchronize, saveTensors, loadTensors, dispose, linear,
  ampForeachNonFiniteCheckAndUnscale_, ampUpdateScale_, full, ones, cpuAllocatorStats, emptyCpuCache, mklCpuDispatch,
} from '../src';
import { spawnSync } from 'child_process';
import { runPython, repoRoot } from './helpers/python';

test('manualSeed makes the default generator reproducible', () => tidy(() => {
  manualSeed(42);
  const a = rand([5]).toTypedArray();
  manualSeed(42);
  const b = rand([5]).toTypedArray();
  assert.equal(Array.from(a), Array.from(b));
  manualSeed(43);
  assert.not.equal(Array.from(rand([5]).toTypedArray()), Array.from(a));
}));

test('Generator objects are independent streams with savable state', () => tidy(() => {
  const g1 = new Generator({ seed: 7 });
  const g2 = new Generator({ seed: 7 });
  const first = Array.from(randn([4], { generator: g1 }).toTypedArray());
  manualSeed(0); // the global seed must not touch explicit generators
  assert.equal(Array.from(randn([4], { generator: g2 }).toTypedArray()), first);
  const state = g1.getState();
  const next = Array.from(randint(0, 1000, [6], { generator: g1 }).toTypedArray());
  g1.setState(state);
  assert.equal(Array.from(randint(0, 1000, [6], { generator: g1 }).toTypedArray()), next);
  assert.is(g1.initialSeed(), 7n);
  // torch.Generator().manual_seed(7); torch.randn(4, generator=g)
  const { stdout } = runPython(['-c', 'import torch; g=torch.Generator().manual_seed(7); print(" ".join(repr(v) for v in torch.randn(4, generator=g).tolist()))']);
  const python = stdout.trim().split(' ').map(Number);
  first.forEach((v, i) => assert.ok(Math.abs(v - python[i]) < 1e-6, `randn stream differs from torch's at ${i}`));
  g1.dispose();
  g2.dispose();
}));

test('thread count is a setting', () => {
  const previous = getNumThreads();
  setNumThreads(1);
  assert.is(getNumThreads(), 1);
  setNumThreads(previous);
  assert.throws(() => setNumThreads(0), /positive/);
});

test('autocast runs matmuls in bfloat16 on CPU and restores the state, also after exceptions', () => tidy(() => {
  const x = randn([4, 4]);
  const w = randn([4, 4]);
  assert.is(linear(x, w).dtype, 'float32');
  const inner = autocast({ device: 'cpu', dtype: 'bfloat16' }, () => {
    const nested = autocast({ device: 'cpu', enabled: false }, () => linear(x, w).dtype);
    assert.is(nested, 'float32');
    return linear(x, w).dtype;
  });
  assert.is(inner, 'bfloat16');
  assert.throws(() => autocast({ device: 'cpu' }, () => { throw new Error('inside'); }), /inside/);
  assert.is(linear(x, w).dtype, 'float32');
  assert.throws(() => autocast({ device: 'cpu', dtype: 'float16' }, () => 0), /bfloat16 only/);
}));

test('AMP kernels unscale, detect overflow and update the scale', () => tidy(() => {
  const grads = [tensor([2, 4], { dtype: 'float32' }), tensor([8, Infinity], { dtype: 'float32' })];
  const foundInf = zeros([1]);
  ampForeachNonFiniteCheckAndUnscale_(grads, foundInf, full([1], 0.5));
  assert.equal(Array.from(grads[0].toTypedArray()), [1, 2]);
  assert.is(foundInf.item(), 1);
  const scale = full([1], 1024);
  const tracker = zeros([1], { dtype: 'int32' });
  ampUpdateScale_(scale, tracker, foundInf, 2, 0.5, 2000);
  assert.is(scale.item(), 512);
  const clean = zeros([1]);
  for (let i = 0; i < 3; i++) ampUpdateScale_(scale, tracker, clean, 2, 0.5, 3);
  assert.is(scale.item(), 1024);
  assert.is(ones([1]).item(), 1);
}));

test('the caching CPU allocator reuses large blocks, can be emptied, and can be turned off', () => {
  emptyCpuCache();
  const before = cpuAllocatorStats()!;
  assert.is(before.cachedBytes, 0);
  zeros([1024, 1024]).dispose(); // 4 MiB: cached when freed
  const cached = cpuAllocatorStats()!;
  assert.ok(cached.cachedBytes >= 4 << 20, `cached ${cached.cachedBytes} bytes`);
  tidy(() => assert.is(zeros([1024, 1024]).sum().item(), 0, 'reused memory is zeroed by zeros()'));
  assert.ok(cpuAllocatorStats()!.hits > cached.hits, 'the second allocation came from the cache');
  emptyCpuCache();
  assert.is(cpuAllocatorStats()!.cachedBytes, 0);
  const { stdout } = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(path.join(repoRoot, 'build', 'ts', 'src', 'tensor'))}).cpuAllocatorStats()))`],
    { encoding: 'utf8', env: { ...process.env, CAMEMBERTA_CPU_ALLOCATOR: 'system' } });
  assert.is(stdout.trim(), 'null');
});

test('MKL CPU dispatch: our mkl_serv_intel_cpu_true() is the one MKL calls; CAMEMBERTA_MKL_CPU picks the rule', () => {
  const here = mklCpuDispatch();
  assert.is(here.mode, process.env.CAMEMBERTA_MKL_CPU === 'vendor' ? 'vendor' : 'features');
  assert.type(here.vendor, 'string');
  // A fresh process per mode, each after a float32 matmul (MKL's sgemm).
  const tensorModule = JSON.stringify(path.join(repoRoot, 'build', 'ts', 'src', 'tensor'));
  const read = (mode: string) => {
    const result = spawnSync(process.execPath, ['-e', `const t = require(${tensorModule});
      t.tidy(() => t.rand([64, 64]).matmul(t.rand([64, 64])).sum().item());
      console.log(JSON.stringify(t.mklCpuDispatch()));`], { encoding: 'utf8', env: { ...process.env, CAMEMBERTA_MKL_CPU: mode } });
    assert.is(result.status, 0, result.stderr.slice(-600));
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as ReturnType<typeof mklCpuDispatch>;
  };
  const features = read('features');
  const vendor = read('vendor');
  const intel = features.vendor === 'GenuineIntel';
  assert.is(features.mode, 'features');
  assert.is(vendor.mode, 'vendor');
  assert.is(features.intelCpuTrue, intel || features.avx2 ? 1 : 0);
  assert.is(vendor.intelCpuTrue, intel ? 1 : 0);
  assert.ok(!features.avx512 || features.avx2, 'AVX-512 reported without AVX2');
  if (features.mklCodePath !== null) {
    // libtorch carries MKL: it asked our definition, and on a non-Intel CPU with AVX2 it took a
    // faster code path than its own rule gives (0, the generic one).
    assert.ok(features.queries > 0 && vendor.queries > 0, `MKL never called ours (${features.queries}, ${vendor.queries})`);
    if (!intel && features.avx2) {
      assert.is(vendor.mklCodePath, 0);
      assert.ok(features.mklCodePath > 0, `MKL code path ${features.mklCodePath} with the features rule`);
    } else {
      assert.is(features.mklCodePath, vendor.mklCodePath);
    }
  }
  const bad = spawnSync(process.execPath, ['-e', `require(${tensorModule})`], { encoding: 'utf8', env: { ...process.env, CAMEMBERTA_MKL_CPU: 'amd' } });
  assert.is.not(bad.status, 0);
  assert.match(bad.stderr, /CAMEMBERTA_MKL_CPU='amd' \(expected 'features' or 'vendor'\)/);
});

test('CUDA queries answer; CUDA-only calls fail clearly on a CPU build', () => {
  assert.type(cudaAvailable(), 'boolean');
  if (!builtWithCuda) {
    assert.is(deviceCount(), 0);
    assert.throws(() => zeros([1], { device: 'cuda' }), /built without CUDA/);
    assert.throws(() => tidy(() => zeros([1]).to('cuda')), /built without CUDA/);
    assert.throws(() => synchronize(), /built without CUDA/);
    assert.throws(() => autocast({ device: 'cuda' }, () => 0), /built without CUDA/);
  } else if (cudaAvailable()) {
    tidy(() => assert.is(zeros([2], { device: 'cuda' }).add(1).cpu().sum().item(), 2));
    synchronize();
  }
});

test('torch.save files we write load with torch.load(weights_only=True), and back', () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-save-'));
  const file = path.join(directory, 'pytorch_model.bin');
  tidy(() => {
    const tensors = {
      'encoder.weight': tensor([[1.5, -2], [3, 4]]),
      'encoder.ids': tensor([1, 2, 3], { dtype: 'int64' }),
      'half': tensor([0.5, 0.25], { dtype: 'bfloat16' }),
      'view': tensor([1, 2, 3, 4, 5, 6]).reshape(2, 3).t(),
    };
    saveTensors(file, tensors);
    const { stdout } = runPython(['-c', `
import torch, json
d = torch.load(${JSON.stringify(file)}, weights_only=True)
print(json.dumps({k: [str(v.dtype), list(v.shape), v.float().flatten().tolist()] for k, v in d.items()}))`]);
    const loaded = JSON.parse(stdout);
    assert.equal(loaded['encoder.weight'], ['torch.float32', [2, 2], [1.5, -2, 3, 4]]);
    assert.equal(loaded['encoder.ids'], ['torch.int64', [3], [1, 2, 3]]);
    assert.equal(loaded['half'], ['torch.bfloat16', [2], [0.5, 0.25]]);
    assert.equal(loaded['view'], ['torch.float32', [3, 2], [1, 4, 2, 5, 3, 6]]);
    const back = loadTensors(file);
    assert.equal([...back.keys()], Object.keys(tensors));
    assert.equal(back.get('view')!.toArray(), [[1, 4], [2, 5], [3, 6]]);
    dispose(back);
  });
  assert.equal(fs.readdirSync(directory), ['pytorch_model.bin'], 'no temporary file is left behind');
  fs.writeFileSync(path.join(directory, 'broken.bin'), 'not a zip');
  assert.throws(() => loadTensors(path.join(directory, 'broken.bin')), /broken\.bin: .*(zip|torch\.save)/);
  assert.throws(() => loadTensors(path.join(directory, 'missing.bin')), /missing\.bin: no such file/);
  fs.rmSync(directory, { recursive: true, force: true });
});

test.run();
