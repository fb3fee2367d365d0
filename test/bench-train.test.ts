// bench:train compares like with like: our step (bench/train-common.ts OurStep, the trainer's
// pieces) and the PyTorch reference (bench/train_reference.py) fed the same weights, masking and
// generator samples compute the same losses and gradient norm on the first step, and after their
// clipping + optimizer update, on the second step too (LAMB and AdamW). No timing is asserted.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, Tensor, liveTensorCount, randint, setNumThreads, tidy, dispose, where, mklCpuDispatch } from '../src/tensor';
import { electraMask } from '../src/pretrain/electra';
import { writeSafetensors, toSafetensorsEntry } from '../src/io';
import { OurStep, StepLosses, WorkerSpec, buildSpec, BenchOptimizer } from '../bench/train-common';
import { mklPreloadLibrary } from '../bench/mkl-preload';
import { randomizeParameters } from './helpers/objective';
import { runPython, repoRoot } from './helpers/python';
import { removeDir } from './helpers/parity';

setNumThreads(2);
const TOLERANCE = 1e-4;
const STEPS = 2;
const REFERENCE = path.join(repoRoot, 'bench', 'train_reference.py');

function tinySpec(optimizer: BenchOptimizer): WorkerSpec {
  const spec = buildSpec({ config: 'tiny', seq: 32, batch: 3, dtype: 'float32', device: 'cpu', threads: 2, optimizer, compile: false, noDropout: true, batchCount: STEPS, seed: 5 });
  return { ...spec, check_steps: STEPS };
}

function writeTensors(file: string, tensors: Iterable<[string, Tensor]>): void {
  writeSafetensors(file, new Map([...tensors].map(([name, t]) => [name, toSafetensorsEntry(t, name)] as const)), { format: 'pt' });
}

function relative(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Runs our STEPS steps on fed draws, writes the case for the reference; returns our per-step values. */
function runOurs(spec: WorkerSpec, dir: string): StepLosses[] {
  const ours = new OurStep(spec);
  try {
    using weights = new Generator({ seed: 11 });
    randomizeParameters(ours.model, weights, { embedding_delta: 0.02 });
    writeTensors(path.join(dir, 'parameters.safetensors'), ours.model.namedParameters());
    using draws = new Generator({ seed: 12 });
    const inputs = new Map<string, Tensor>();
    const results: StepLosses[] = [];
    for (let k = 0; k < STEPS; k++) {
      const batch = ours.batches[k];
      const fed = tidy(() => {
        const masking = electraMask(batch.inputIds, batch.attentionMask, spec.special,
          { maskProb: spec.electra.mask_prob, maskTokenProb: spec.electra.mask_token_prob, randomTokenProb: 0 }, draws);
        // Samples drawn from a few ids so that some equal the original token (not replaced).
        const sampledIds = randint(5, 12, masking.positions.shape, { generator: draws });
        const used = masking.weights.gt(0);
        return { masking, sampledIds: where(used, sampledIds, masking.originalIds) as Tensor<'int64'> };
      });
      const entries: [string, Tensor][] = [
        ['input_ids', batch.inputIds], ['attention_mask', batch.attentionMask], ['masked_input_ids', fed.masking.inputIds],
        ['positions', fed.masking.positions], ['original_ids', fed.masking.originalIds], ['weights', fed.masking.weights], ['sampled_ids', fed.sampledIds],
      ];
      for (const [name, t] of entries) inputs.set(`step${k}.${name}`, t.clone());
      results.push(ours.step(batch, fed)!);
      dispose([fed.masking.inputIds, fed.masking.positions, fed.masking.originalIds, fed.masking.weights, fed.sampledIds]);
    }
    writeTensors(path.join(dir, 'inputs.safetensors'), inputs);
    dispose([...inputs.values()]);
    return results;
  } finally {
    ours.dispose();
  }
}

test(`LAMB and AdamW: two steps fed the same weights and draws give the reference's losses and gradient norm to ${TOLERANCE}`, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-bench-train-'));
  try {
    const optimizers = ['lamb', 'adamw'] as const;
    const dirs = optimizers.map((optimizer) => {
      const dir = path.join(root, optimizer);
      fs.mkdirSync(dir);
      return dir;
    });
    const ours = optimizers.map((optimizer, i) => {
      const spec = tinySpec(optimizer);
      fs.writeFileSync(path.join(dirs[i], 'spec.json'), JSON.stringify(spec));
      return runOurs(spec, dirs[i]);
    });
    // One interpreter for both cases: importing torch and transformers is most of its time.
    const { stdout } = runPython([REFERENCE, 'check', ...dirs], { timeoutMs: 300_000 });
    const replies = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, { steps: StepLosses[] }>;
    optimizers.forEach((optimizer, i) => {
      const reference = replies[dirs[i]].steps;
      assert.is(reference.length, STEPS);
      for (let k = 0; k < STEPS; k++) {
        for (const key of ['loss', 'gen_loss', 'disc_loss', 'grad_norm'] as const) {
          const error = relative(ours[i][k][key], reference[k][key]);
          assert.ok(error <= TOLERANCE, `${optimizer} step ${k + 1} ${key}: ours ${ours[i][k][key]}, reference ${reference[k][key]} (relative ${error})`);
        }
      }
      // The update did something: the second step's loss differs from the first's beyond the tolerance,
      // and clipping was active (the norm exceeds clip_norm 1).
      assert.ok(relative(ours[i][1].loss, ours[i][0].loss) > 1e-3, `${optimizer}: loss ${ours[i][0].loss} -> ${ours[i][1].loss}`);
      assert.ok(ours[i][0].grad_norm > 1, `${optimizer}: gradient norm ${ours[i][0].grad_norm}`);
    });
  } finally {
    removeDir(root);
  }
});

test('the per-phase timing path computes the step the timed path computes, and a step leaves no tensor behind', () => {
  const spec = buildSpec({ config: 'tiny', seq: 32, batch: 3, dtype: 'float32', device: 'cpu', threads: 2, optimizer: 'lamb', compile: false, batchCount: 2, seed: 3 });
  const plain = new OurStep(spec);
  const phased = new OurStep(spec);
  try {
    plain.run(2);
    const phases = phased.phases(2).phases;
    assert.equal(Object.keys(phases), ['masking', 'generator_forward', 'sampling', 'discriminator_forward', 'statistics', 'backward', 'clip', 'optimizer']);
    const [a, b] = [plain.statisticsSums(), phased.statisticsSums()];
    a.forEach((value, i) => assert.ok(relative(b[i], value) <= 1e-6, `statistic ${i}: ${b[i]} vs ${value}`));
    const before = liveTensorCount();
    plain.run(2);
    assert.is(liveTensorCount(), before);
  } finally {
    plain.dispose();
    phased.dispose();
  }
});

test('--reference-mkl: the preloaded library gives the reference the MKL code path ours takes; without it, MKL\'s own', () => {
  const ours = mklCpuDispatch();
  if (ours.mklCodePath === null) return; // no MKL in this libtorch: nothing to dispatch
  const built = mklPreloadLibrary();
  assert.ok('path' in built, 'error' in built ? built.error : '');
  const script = `import json, sys; sys.path.insert(0, ${JSON.stringify(path.join(repoRoot, 'bench'))}); import train_reference; print(json.dumps(train_reference.mkl_dispatch()))`;
  const read = (env: Record<string, string>) => JSON.parse(runPython(['-c', script], { env }).stdout.trim().split('\n').pop()!) as { mode: string; code_path: number | null };
  const withPreload = read({ LD_PRELOAD: [(built as { path: string }).path, process.env.LD_PRELOAD].filter(Boolean).join(':') });
  const shipped = read({});
  assert.is(withPreload.mode, 'features');
  assert.is(shipped.mode, 'vendor');
  if (ours.mode === 'features') assert.is(withPreload.code_path, ours.mklCodePath, 'the reference\'s MKL path differs from ours');
  if (ours.vendor !== 'GenuineIntel' && ours.avx2) assert.ok(withPreload.code_path! > shipped.code_path!, `code path ${withPreload.code_path} vs ${shipped.code_path}`);
});

test.run();
