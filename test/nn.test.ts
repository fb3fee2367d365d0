// Module bookkeeping: paths from attributes, tied parameters, loadStateDict reporting, train/eval,
// to(), initialisation; and that a training-style loop over a small DeBERTa does not leak tensors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Tensor, Generator, tidy, zeros, ones, empty, randn, randint, liveTensorCount, setNumThreads, manualSeed, dropout, cpuDropout, dropoutThreshold, aten, callOp } from '../src/tensor';
import { Module, Parameter, Linear, Embedding, LayerNorm, Dropout, StateDictError, initWeights } from '../src/nn';
import { DebertaV2ForMaskedLM, relativePositionBuckets } from '../src/models';
import { parseDebertaConfig } from '../src/models/deberta/config';
import { repoRoot } from './helpers/python';

setNumThreads(2);

class Block extends Module {
  dense = new Linear(4, 3);
  LayerNorm = new LayerNorm(3);
  dropout = new Dropout(0.5);
}

class Toy extends Module {
  embeddings = new Embedding(10, 4, 0);
  layer = [new Block(), new Block()];
  missingHead: Linear | null = null;
  decoder = new Linear(4, 10);
  bias = new Parameter(zeros([10]));

  constructor() {
    super();
    // Tie decoder.weight to the embeddings (shapes [10, 4] both), as an MLM head does.
    this.decoder.weight.dispose();
    this.decoder.weight = this.embeddings.weight;
  }
}

test('attribute paths, arrays as numbered children, null attributes absent, tied weights listed once', () => {
  const toy = new Toy();
  try {
    const paths = toy.namedParameterPaths().map(([path]) => path);
    // A module's own parameters first, then its children's (torch's order).
    assert.equal(paths, [
      'bias', 'embeddings.weight',
      'layer.0.dense.weight', 'layer.0.dense.bias', 'layer.0.LayerNorm.weight', 'layer.0.LayerNorm.bias',
      'layer.1.dense.weight', 'layer.1.dense.bias', 'layer.1.LayerNorm.weight', 'layer.1.LayerNorm.bias',
      'decoder.weight', 'decoder.bias',
    ]);
    const named = toy.namedParameters().map(([path]) => path);
    assert.not.ok(named.includes('decoder.weight'), 'a tied parameter is listed under its first path only');
    assert.is(toy.parameters().length, paths.length - 1);
    assert.is(toy.numParameters(), 40 + 2 * (12 + 3 + 3 + 3) + 10 + 10);
    assert.ok(toy.parameters().every((p) => p.requiresGrad && p.kept));
    assert.is(toy.stateDict().size, paths.length);
  } finally {
    toy.dispose();
  }
});

test('loadStateDict copies values and reports missing, unexpected and mismatched keys by name', () => {
  const toy = new Toy();
  const source = new Toy();
  try {
    tidy(() => {
      initWeights(source, { std: 0.5, generator: new Generator({ seed: 1 }) });
      const dict = new Map<string, Tensor>(source.stateDict());
      dict.delete('decoder.weight'); // tied: satisfied by embeddings.weight
      const result = toy.loadStateDict(dict);
      assert.equal(result, { missing: [], unexpected: [], mismatched: [] });
      assert.is(toy.embeddings.weight.sub(source.embeddings.weight).abs().max().item(), 0);
      assert.ok(toy.decoder.weight === toy.embeddings.weight);

      const bad = new Map<string, Tensor>(dict);
      bad.delete('layer.1.dense.bias');
      bad.set('layer.0.dense.weight', zeros([3, 5]));
      bad.set('encoder.extra', zeros([1]));
      const before = toy.layer[0].LayerNorm.weight!.clone();
      const error = (() => { try { toy.loadStateDict(bad); } catch (e) { return e as StateDictError; } return null; })();
      assert.ok(error instanceof StateDictError, 'strict load of a misfit dict throws');
      assert.match(error!.message, 'missing keys (1): layer.1.dense.bias');
      assert.match(error!.message, 'unexpected keys (1): encoder.extra');
      assert.match(error!.message, 'layer.0.dense.weight: model has [3, 4], dict has [3, 5]');
      assert.is(toy.layer[0].LayerNorm.weight!.sub(before).abs().max().item(), 0, 'a strict failure copies nothing');

      const report = toy.loadStateDict(bad, { strict: false });
      assert.equal(report.missing, ['layer.1.dense.bias']);
      assert.equal(report.unexpected, ['encoder.extra']);
      assert.equal(report.mismatched, [{ key: 'layer.0.dense.weight', expected: [3, 4], got: [3, 5] }]);
    });
  } finally {
    toy.dispose();
    source.dispose();
  }
});

test('train() / eval() reach every submodule; dropout acts only while training', () => {
  const toy = new Toy();
  try {
    assert.ok(toy.layer[1].dropout.training);
    toy.eval();
    assert.not.ok(toy.namedModules().some(([, m]) => m.training));
    tidy(() => {
      const x = ones([1000]);
      assert.is(toy.layer[0].dropout.forward(x).sum().item(), 1000);
      toy.train();
      const dropped = toy.layer[0].dropout.forward(x);
      const zerosCount = dropped.eq(0).sum().item();
      assert.ok(zerosCount > 400 && zerosCount < 600, `${zerosCount} zeros`);
    });
  } finally {
    toy.dispose();
  }
});

test('CPU dropout (integer bits): drop rate p, aten\'s scaling, gradient, eval is identity', () => {
  assert.is(cpuDropout(), process.env.CAMEMBERTA_CPU_DROPOUT === 'aten' ? 'aten' : 'bits');
  const before = liveTensorCount();
  tidy(() => {
    const n = 1 << 20;
    for (const p of [0.1, 0.5]) {
      const x = ones([n], { requiresGrad: true });
      const y = dropout(x, p, true);
      const dropped = y.eq(0).sum().item();
      const sigma = Math.sqrt(p * (1 - p) / n);
      assert.ok(Math.abs(dropped / n - p) < 6 * sigma, `p ${p}: ${dropped / n} dropped`);
      // Kept values: 1 / (1 - p) computed in float32 as aten's noise.div_(1 - p).
      const scale = ones([1]).div(1 - p).item();
      assert.is(y.ne(0).logicalAnd(y.ne(scale)).sum().item(), 0, 'a kept value is not x / (1 - p)');
      y.sum().backward();
      assert.is(x.grad!.ne(y).sum().item(), 0, 'the gradient is not the mask / (1 - p)');
      // Eval mode and p = 0: the input's values.
      const z = randn([1000]);
      assert.is(dropout(z, p, false).ne(z).sum().item(), 0);
      assert.is(dropout(z, 0, true).ne(z).sum().item(), 0);
    }
    if (cpuDropout() === 'bits') {
      // The mask is exactly "the element's 32 bits of the default generator's 64-bit draws are
      // below dropoutThreshold(p)": same seed, same draws; an odd length uses half of the last draw.
      for (const dtype of ['float32', 'bfloat16'] as const) {
        const p = 0.3;
        const n = 4095;
        manualSeed(123);
        const words = empty([2048], { dtype: 'int64' });
        callOp(aten('random_.from'), words.handle, -(BigInt(2) ** BigInt(63)), null, null);
        const bits = words.view('int32').narrow(0, 0, n);
        manualSeed(123);
        const y = dropout(ones([n], { dtype }), p, true);
        assert.is(y.dtype, dtype);
        assert.is(y.eq(0).ne(bits.lt(dropoutThreshold(p))).sum().item(), 0, `${dtype}: the mask is not bits < threshold`);
      }
      // The threshold: a drop probability of round(p * 2^32) / 2^32.
      assert.is(dropoutThreshold(0.5), 0);
      assert.is(dropoutThreshold(0.25), -(2 ** 30));
      assert.is(dropoutThreshold(1e-12), -(2 ** 31));
      // A non-contiguous input gets the mask in its own layout.
      const wide = ones([64, 32]).t();
      const dropped = dropout(wide, 0.5, true);
      assert.equal(dropped.shape, [32, 64]);
      const zeroCount = dropped.eq(0).sum().item();
      assert.ok(zeroCount > 824 && zeroCount < 1224, `${zeroCount} of 2048 dropped at p 0.5`);
    }
  });
  assert.is(liveTensorCount(), before, 'dropout leaked tensors');
});

test('CAMEMBERTA_CPU_DROPOUT=aten keeps aten\'s dropout; a wrong value is an error naming it', () => {
  const tensorModule = JSON.stringify(path.join(repoRoot, 'build', 'ts', 'src', 'tensor'));
  const run = (value: string) => spawnSync(process.execPath, ['-e', `const t = require(${tensorModule});
    console.log(JSON.stringify([t.cpuDropout(), t.tidy(() => t.dropout(t.ones([100000]), 0.25, true).eq(0).sum().item())]));`],
  { encoding: 'utf8', env: { ...process.env, CAMEMBERTA_CPU_DROPOUT: value } });
  const aten = run('aten');
  assert.is(aten.status, 0, aten.stderr.slice(-600));
  const [mode, dropped] = JSON.parse(aten.stdout.trim()) as [string, number];
  assert.is(mode, 'aten');
  assert.ok(Math.abs(dropped / 100000 - 0.25) < 0.01, `${dropped} of 100000 dropped`);
  const bad = run('bernoulli');
  assert.is.not(bad.status, 0);
  assert.match(bad.stderr, /CAMEMBERTA_CPU_DROPOUT='bernoulli' \(expected 'bits' or 'aten'\)/);
});

test('to(dtype) converts every parameter and keeps ties', () => {
  const toy = new Toy();
  try {
    toy.to('float64');
    assert.ok(toy.parameters().every((p) => p.dtype === 'float64' && p.requiresGrad));
    assert.ok(toy.decoder.weight === toy.embeddings.weight);
    assert.ok(toy.decoder.weight instanceof Parameter);
  } finally {
    toy.dispose();
  }
});

test('initWeights: N(0, std) weights, zero biases, LayerNorm ones/zeros, padding row zero; seeded', () => {
  const a = new Toy();
  const b = new Toy();
  try {
    tidy(() => {
      initWeights(a, { std: 0.02, generator: new Generator({ seed: 5 }) });
      initWeights(b, { std: 0.02, generator: new Generator({ seed: 5 }) });
      assert.is(a.layer[1].dense.weight.sub(b.layer[1].dense.weight).abs().max().item(), 0, 'same seed, same weights');
      assert.is(a.embeddings.weight.select(0, 0).abs().max().item(), 0, 'padding row');
      assert.is(a.layer[0].dense.bias!.abs().max().item(), 0);
      assert.is(a.layer[0].LayerNorm.weight!.sub(1).abs().max().item(), 0);
      const big = new Linear(400, 500);
      initWeights(big, { std: 0.02, truncated: true, generator: new Generator({ seed: 1 }) });
      const std = big.weight.std([0, 1]).item();
      assert.ok(Math.abs(std - 0.02 * 0.8796) < 5e-4, `truncated std ${std}`); // std of N(0,1) cut at +-2
      assert.ok(big.weight.abs().max().item() <= 0.04 + 1e-7);
      big.dispose();
    });
  } finally {
    a.dispose();
    b.dispose();
  }
});

test('log buckets: the distances SPEC section 2 lists (mid 128, 512 positions)', () => {
  const buckets = relativePositionBuckets(512, 256, 512);
  const at = (r: number) => buckets[r + 511];
  assert.equal([at(0), at(128), at(129), at(200), at(300), at(511)], [0, 128, 129, 169, 207, 255]);
  assert.equal([at(-129), at(-511)], [-129, -255]);
});

const SMALL = parseDebertaConfig({
  vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32,
  relative_attention: true, pos_att_type: ['p2c', 'c2p'], position_buckets: 8, max_relative_positions: -1,
  max_position_embeddings: 64, share_att_key: true, norm_rel_ebd: 'layer_norm', position_biased_input: false,
  conv_kernel_size: 3, conv_act: 'gelu', embedding_size: 24,
});

test('no tensor leaks: many tidy() forward + backward steps of a small DeBERTa leave liveTensorCount flat', () => {
  const start = liveTensorCount();
  const model = new DebertaV2ForMaskedLM(SMALL, { generator: new Generator({ seed: 0 }) });
  const generator = new Generator({ seed: 1 });
  try {
    model.train();
    const step = (length: number) => tidy(() => {
      const inputIds = randint(3, 50, [3, length], { generator });
      const attentionMask = ones([3, length], { dtype: 'int64' });
      attentionMask.select(0, 2).narrow(0, length - 3, 3).zero_();
      const labels = randint(3, 50, [3, length], { generator });
      const { loss } = model.forward({ inputIds, attentionMask, labels });
      loss!.backward();
      model.zeroGrad();
    });
    for (const length of [12, 30]) step(length); // first use of each length makes its cached plan
    const before = liveTensorCount();
    for (let i = 0; i < 40; i++) step(i % 2 ? 12 : 30);
    assert.is(liveTensorCount(), before);
  } finally {
    model.dispose();
  }
  assert.is(liveTensorCount(), start, 'dispose() frees the parameters and the cached relative-position plans');
});

test.run();
