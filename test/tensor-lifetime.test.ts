// tidy/keep/dispose semantics and the leak check: the live-tensor count stays flat over many
// forward+backward steps.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Tensor, Generator, randn, zeros, tensor, tidy, keep, dispose, liveTensorCount, linear, layerNorm, crossEntropy,
  foreach, noGrad, setNumThreads,
} from '../src';

test('tidy disposes intermediates and keeps what it returns, at any depth', () => {
  const before = liveTensorCount();
  const { a, pair, map } = tidy(() => {
    const x = randn([4]);
    x.exp().sin(); // dropped: must be freed
    return { a: x.add(1), pair: [x.mul(2), x.mul(3)], map: new Map([['k', x.neg()]]) };
  });
  assert.is(liveTensorCount(), before + 4);
  assert.not.ok(a.isDisposed);
  assert.not.ok(map.get('k')!.isDisposed);
  dispose([a, pair, map]);
  assert.is(liveTensorCount(), before);
});

test('nested tidy moves returned tensors to the parent scope', () => {
  const before = liveTensorCount();
  const outer = tidy(() => {
    const inner = tidy(() => zeros([2]).add(1));
    assert.not.ok(inner.isDisposed);
    return inner.mul(5);
  });
  assert.is(liveTensorCount(), before + 1);
  assert.equal(Array.from(outer.toTypedArray()), [5, 5]);
  outer.dispose();
  assert.is(liveTensorCount(), before);
});

test('keep() survives enclosing scopes until disposed', () => {
  const before = liveTensorCount();
  let kept!: Tensor;
  tidy(() => {
    kept = keep(zeros([3]));
    zeros([3]);
  });
  assert.not.ok(kept.isDisposed);
  assert.is(liveTensorCount(), before + 1);
  kept.dispose();
  kept.dispose(); // twice is harmless
  assert.is(liveTensorCount(), before);
});

test('an exception inside tidy frees the scope and propagates', () => {
  const before = liveTensorCount();
  assert.throws(() => tidy(() => {
    zeros([10]);
    zeros([2, 2]).matmul(zeros([3, 3]));
  }), /shapes cannot be multiplied/);
  assert.is(liveTensorCount(), before);
});

test('tidy rejects async functions rather than leaking', () => {
  const before = liveTensorCount();
  assert.throws(() => tidy((() => Promise.resolve(zeros([1]))) as unknown as () => Tensor), /async/);
  assert.is(liveTensorCount(), before);
});

test('Symbol.dispose releases a tensor (TypeScript `using`)', () => {
  const before = liveTensorCount();
  {
    using t = zeros([5]);
    assert.is(t.numel(), 5);
    assert.is(liveTensorCount(), before + 1);
  }
  assert.is(liveTensorCount(), before);
});

test('the finalizer safety net frees tensors dropped outside any scope, once the event loop runs', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'run with --expose-gc (scripts/run-tests.js does)');
  const before = liveTensorCount();
  (() => {
    for (let i = 0; i < 100; i++) zeros([16]);
    for (let i = 0; i < 50; i++) tidy(() => zeros([16]).add(1)); // returned from the outermost scope
    for (let i = 0; i < 50; i++) tidy(() => { keep(zeros([16])); });
  })();
  assert.is(liveTensorCount(), before + 200, 'nothing is freed synchronously');
  for (let round = 0; round < 50 && liveTensorCount() > before; round++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.is(liveTensorCount(), before);
});

test('tensors inside tidy() scopes do not push V8 into garbage collections', () => {
  // They are reported as external memory only outside scopes; reporting them made V8 run a
  // mark-compact every few milliseconds of a training step (a 6x slower forward on a GPU).
  const { PerformanceObserver } = require('perf_hooks') as typeof import('perf_hooks');
  let collections = 0;
  const observer = new PerformanceObserver((list) => { collections += list.getEntries().length; });
  observer.observe({ entryTypes: ['gc'] });
  const start = Date.now();
  // Scopes holding 200 MB at once, as a forward pass holds its activations.
  for (let i = 0; i < 10; i++) tidy(() => { for (let j = 0; j < 100; j++) zeros([512, 1024]); });
  const elapsed = Date.now() - start;
  // GC entries reach the observer asynchronously.
  return new Promise<void>((resolve) => setTimeout(() => {
    observer.disconnect();
    assert.ok(collections <= 5, `${collections} garbage collections during ${elapsed} ms of scoped tensor work`);
    resolve();
  }, 200));
});

test('live tensor count stays flat over 1,000 tidy forward+backward steps', () => {
  setNumThreads(1); // a tiny model: thread hand-offs would dominate on a loaded 2-core machine
  const g = new Generator({ seed: 3 });
  const w1 = keep(randn([16, 8], { generator: g }).mul(0.1).requiresGrad_());
  const b1 = keep(zeros([16]).requiresGrad_());
  const gamma = keep(zeros([16]).add(1).requiresGrad_());
  const beta = keep(zeros([16]).requiresGrad_());
  const w2 = keep(randn([5, 16], { generator: g }).mul(0.1).requiresGrad_());
  const params = [w1, b1, gamma, beta, w2];
  const x = keep(randn([32, 8], { generator: g }));
  const y = keep(tensor(Array.from({ length: 32 }, (_, i) => i % 5), { dtype: 'int64' }));
  const step = () => tidy(() => {
    const hidden = layerNorm(linear(x, w1, b1).gelu(), [16], gamma, beta);
    const loss = crossEntropy(linear(hidden, w2), y);
    loss.backward();
    noGrad(() => {
      const grads = params.map((p) => p.grad!);
      foreach.add_(params, grads.map((gr) => gr.mul(-0.1)));
      foreach.zero_(grads);
    });
    return loss.item();
  });
  for (let i = 0; i < 10; i++) step(); // gradients are allocated on the first backward
  const baseline = liveTensorCount();
  const first = step();
  let last = first;
  for (let i = 0; i < 1000; i++) last = step();
  assert.is(liveTensorCount(), baseline, 'tensors leaked across steps');
  assert.ok(last < first, `training did not reduce the loss (${first} -> ${last})`);
  dispose([params, x, y]);
});

test.run();
