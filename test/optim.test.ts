// AdamW against torch.optim.AdamW on the same parameters, loss and parameter groups.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { arange, tidy, keep, dispose, Tensor, linear, liveTensorCount } from '../src/tensor';
import { AdamW, isBiasOrLayerNorm } from '../src/optim';
import { runPython } from './helpers/python';
import { makeParameters, backwardStep, checkStateRoundTrip } from './helpers/optim-fixture';

const PYTHON = `
import json, torch
w = (torch.arange(12, dtype=torch.float32) * 0.3).sin().reshape(4, 3).requires_grad_()
b = torch.arange(4, dtype=torch.float32).cos().requires_grad_()
x = (torch.arange(15, dtype=torch.float32) * 0.7).cos().reshape(5, 3)
opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                        lr=0.05, betas=(0.8, 0.95), eps=1e-6)
for step in range(6):
    opt.zero_grad()
    torch.nn.functional.linear(x, w, b).tanh().pow(2).sum().backward()
    opt.step()
print(json.dumps({"w": w.detach().flatten().tolist(), "b": b.detach().tolist()}))
`;

test('AdamW matches torch.optim.AdamW over six steps, with and without weight decay', () => {
  const expected = JSON.parse(runPython(['-c', PYTHON]).stdout) as { w: number[]; b: number[] };
  const w = keep(tidy(() => arange(12, undefined, 1, { dtype: 'float32' }).mul(0.3).sin().reshape(4, 3)).requiresGrad_());
  const b = keep(tidy(() => arange(4, undefined, 1, { dtype: 'float32' }).cos()).requiresGrad_());
  const x = keep(tidy(() => arange(15, undefined, 1, { dtype: 'float32' }).mul(0.7).cos().reshape(5, 3)));
  const optimizer = new AdamW([['dense.weight', w], ['dense.bias', b]], { lr: 0.05, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 });
  for (let step = 0; step < 6; step++) {
    optimizer.zeroGrad();
    tidy(() => linear(x, w, b).tanh().pow(2).sum().backward());
    optimizer.step();
  }
  const close = (actual: Tensor, reference: number[], name: string) => {
    const values = Array.from(actual.detach().toTypedArray() as Float32Array);
    values.forEach((v, i) => assert.ok(Math.abs(v - reference[i]) < 1e-6, `${name}[${i}]: ${v} vs torch ${reference[i]}`));
  };
  tidy(() => {
    close(w, expected.w, 'weight');
    close(b, expected.b, 'bias');
  });
  optimizer.dispose();
  dispose([w, b, x]);
});

test('biases and LayerNorm parameters are exempt from weight decay by default', () => {
  assert.ok(isBiasOrLayerNorm('encoder.layer.0.output.dense.bias'));
  assert.ok(isBiasOrLayerNorm('embeddings.LayerNorm.weight'));
  assert.ok(isBiasOrLayerNorm('lm_head.layer_norm.weight'));
  assert.not.ok(isBiasOrLayerNorm('encoder.layer.0.output.dense.weight'));
});

test('AdamW state round-trips: resumed training is bitwise identical', () => {
  checkStateRoundTrip((named) => new AdamW(named, { lr: 1e-2, betas: [0.878, 0.974], eps: 1e-6, weightDecay: 0.01 }),
    (step) => 1e-2 * (step + 1) / 6);
});

test('AdamW stepCount counts completed steps; state keys name every parameter', () => {
  const named = makeParameters();
  const optimizer = new AdamW(named, { lr: 1e-2 });
  assert.is(optimizer.stepCount, 0);
  backwardStep(named, 0);
  optimizer.step(1e-2);
  optimizer.step(1e-2);
  assert.is(optimizer.stepCount, 2);
  assert.equal([...optimizer.stateTensors().keys()], [
    'exp_avg/dense.weight', 'exp_avg/dense.bias', 'exp_avg/LayerNorm.weight',
    'exp_avg_sq/dense.weight', 'exp_avg_sq/dense.bias', 'exp_avg_sq/LayerNorm.weight',
    'step/dense.weight', 'step/dense.bias', 'step/LayerNorm.weight', 'step_count']);
  assert.throws(() => optimizer.loadState(optimizer.stateTensors(), { optimizer: 'Lamb', stepCount: 2 }), /'optimizer' is "Lamb", expected 'AdamW'/);
  optimizer.dispose();
  dispose(named.map(([, p]) => p));
});

test('AdamW leaks no tensor over 300 steps', () => {
  const named = makeParameters();
  const optimizer = new AdamW(named, { lr: 1e-2, weightDecay: 0.01 });
  let baseline = 0;
  for (let step = 0; step < 300; step++) {
    if (step === 2) baseline = liveTensorCount();
    optimizer.zeroGrad();
    backwardStep(named, step);
    optimizer.step(1e-2);
  }
  assert.is(liveTensorCount(), baseline);
  optimizer.dispose();
  dispose(named.map(([, p]) => p));
});

test.run();
