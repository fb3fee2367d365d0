// The ELECTRA + GDES objective (src/pretrain/electra.ts) against a PyTorch reference built from
// transformers' DebertaV2ForMaskedLM and DebertaV2Model plus the few lines of ELECTRA
// (test/python/electra_reference.py): same weights, masking and generator samples give the same
// generator and discriminator losses, logits, corrupted input, labels and the gradient of every
// parameter, under each embedding sharing (gdes, es, none). Then GDES's gradient isolation.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, Tensor, liveTensorCount, setNumThreads, tensor, tidy } from '../src/tensor';
import { configToJson } from '../src/io';
import { tinyDebertaConfig } from '../src/models/presets';
import { DebertaV2Config } from '../src/models/deberta/config';
import { ElectraModel, EmbeddingSharing, Masking, SpecialTokenIds, electraMask } from '../src/pretrain/electra';
import { compareGradients, readTensors, removeDir } from './helpers/parity';
import { maskingInputs, paddedBatch, randomizeParameters, runObjectiveReference, writeReferenceCase } from './helpers/objective';

setNumThreads(2);

const VOCAB = 100;
const SPECIAL: SpecialTokenIds = { pad: 0, cls: 1, sep: 2, mask: 3 };
const MODES: EmbeddingSharing[] = ['gdes', 'es', 'none'];
const DISC_WEIGHT = 50;
const TOLERANCE = 1e-4;
const MASKING = { maskProb: 0.15, maskTokenProb: 0.85, randomTokenProb: 0 };
// Rows of 40 tokens reach the log buckets with position_buckets 16 (|r| > 8 is bucketed).
const LENGTHS = [40, 33, 21];
const GENERATOR_WORDS = 'generator.deberta.embeddings.word_embeddings.weight';
const DISCRIMINATOR_WORDS = 'discriminator.deberta.embeddings.word_embeddings.weight';

const common = {
  vocab_size: VOCAB, num_hidden_layers: 2, position_buckets: 16, max_position_embeddings: 64,
  hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, pad_token_id: SPECIAL.pad,
};
// Generator: narrower than its word embeddings, so embeddings.embed_proj and the E-wide head are in play.
const generatorConfig: DebertaV2Config = tinyDebertaConfig({
  ...common, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, embedding_size: 48, conv_kernel_size: 0,
});
const discriminatorConfig: DebertaV2Config = tinyDebertaConfig({
  ...common, hidden_size: 48, num_attention_heads: 3, intermediate_size: 96, embedding_size: 48, conv_kernel_size: 3, conv_act: 'gelu',
});

interface Fixture {
  batch: { inputIds: Tensor<'int64'>; attentionMask: Tensor<'int64'> };
  masking: Masking;
  sampledIds: Tensor<'int64'>;
  /** [row, first slot, later slot] of a position drawn twice whose samples differ. */
  duplicate: [number, number, number];
}

let root = '';
let fixture: Fixture;
const models = new Map<EmbeddingSharing, ElectraModel>();

/** Masking from electraMask over seeds until a row draws one position in two used slots. */
function maskingWithDuplicate(batch: Fixture['batch']): { masking: Masking; duplicate: [number, number, number] } {
  using generator = new Generator();
  for (let seed = 0; seed < 200; seed++) {
    const masking = electraMask(batch.inputIds, batch.attentionMask, SPECIAL, MASKING, generator.manualSeed(seed));
    const positions = masking.positions.toArray() as number[][];
    const weights = masking.weights.toArray() as number[][];
    for (let b = 0; b < positions.length; b++) {
      for (let later = 1; later < positions[b].length; later++) {
        const first = positions[b].findIndex((p, n) => n < later && p === positions[b][later]);
        if (weights[b][later] > 0 && first >= 0) return { masking, duplicate: [b, first, later] };
      }
    }
    for (const t of Object.values(masking)) t.dispose();
  }
  throw new Error('no seed in 0..199 gave electraMask a duplicated position');
}

/**
 * Samples: every third slot its original token (not a replacement), others a different token.
 * At the duplicated position the first slot keeps the original and the later one differs, so
 * writing the later slot instead of the first would flip that position's label.
 */
function sampledIdsFor(masking: Masking, duplicate: [number, number, number]): Tensor<'int64'> {
  const original = masking.originalIds.toArray() as number[][];
  const firstFree = 4;
  const sampled = original.map((row, b) => row.map((token, n) => {
    if ((b + n) % 3 === 0) return token;
    return firstFree + ((token - firstFree + 1 + ((7 * b + n) % 90)) % (VOCAB - firstFree));
  }));
  const [b, first, later] = duplicate;
  sampled[b][first] = original[b][first];
  sampled[b][later] = firstFree + ((original[b][later] - firstFree + 5) % (VOCAB - firstFree));
  return tensor(sampled, { dtype: 'int64' });
}

/** max|a - b| / max|b|, over the real tokens only when `mask` [B, L] is given (pad rows' states are not compared). */
function relativeError(actual: Tensor, expected: Tensor, mask?: Tensor): number {
  return tidy(() => {
    const pad = mask ? mask.eq(0) : null;
    const masked = (t: Tensor) => (pad ? t.maskedFill(pad, 0) : t);
    return masked(actual.sub(expected)).abs().max().item() / Math.max(masked(expected).abs().max().item(), 1e-30);
  });
}

test.before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-electra-'));
  using generator = new Generator({ seed: 11 });
  const batch = paddedBatch(LENGTHS, VOCAB, SPECIAL, 4, generator);
  const { masking, duplicate } = maskingWithDuplicate(batch);
  fixture = { batch, masking, duplicate, sampledIds: sampledIdsFor(masking, duplicate) };
  for (const [i, sharing] of MODES.entries()) {
    const model = new ElectraModel(generatorConfig, discriminatorConfig, sharing, { generator: generator.manualSeed(100 + i) });
    // GDES's delta starts at zero; small random values make it matter in the comparison.
    randomizeParameters(model, generator, { embedding_delta: 0.05 });
    model.eval();
    models.set(sharing, model);
    writeReferenceCase(root, sharing, {
      spec: { kind: 'electra', sharing, disc_weight: DISC_WEIGHT },
      configs: {
        'generator.json': configToJson(generatorConfig, 'DebertaV2ForMaskedLM'),
        'discriminator.json': configToJson(discriminatorConfig, 'DebertaV2Model'),
      },
      parameters: model.namedParameters(),
      inputs: { ...maskingInputs(batch, masking), sampled_ids: fixture.sampledIds },
    });
  }
  runObjectiveReference(root, MODES);
});

test.after(() => {
  for (const model of models.values()) model.dispose();
  if (fixture) for (const t of [...Object.values(fixture.batch), ...Object.values(fixture.masking), fixture.sampledIds]) t.dispose();
  if (root) removeDir(root);
});

test('the fixture exercises what it must: padding, a duplicated position, samples equal and unequal to the original', () => {
  const weights = fixture.masking.weights.toArray() as number[][];
  assert.equal(weights.map((row) => row.reduce((a, b) => a + b, 0)), [6, 5, 3]);
  const [b, first, later] = fixture.duplicate;
  const positions = fixture.masking.positions.toArray() as number[][];
  assert.is(positions[b][first], positions[b][later]);
  const sampled = fixture.sampledIds.toArray() as number[][];
  const original = fixture.masking.originalIds.toArray() as number[][];
  const used = sampled.flatMap((row, i) => row.filter((_, n) => weights[i][n] > 0).map((s, n) => s === original[i][n]));
  assert.ok(used.includes(true) && used.includes(false));
});

test('parameter names: E_G listed once under generator.* when shared, a separate table under none, embedding_delta only under gdes', () => {
  for (const [sharing, model] of models) {
    const names = model.namedParameters().map(([name]) => name);
    assert.ok(names.includes(GENERATOR_WORDS), sharing);
    assert.is(names.includes(DISCRIMINATOR_WORDS), sharing === 'none', sharing);
    assert.is(names.includes('embedding_delta'), sharing === 'gdes', sharing);
    assert.ok(names.every((name) => /^(generator|discriminator)\./.test(name) || name === 'embedding_delta'), sharing);
  }
});

for (const sharing of MODES) {
  test(`${sharing}: losses, logits, corrupted input, labels and every parameter's gradient match PyTorch`, () => {
    const model = models.get(sharing)!;
    const dir = path.join(root, sharing);
    model.zeroGrad();
    tidy(() => {
      const expected = readTensors(path.join(dir, 'outputs.safetensors'));
      const out = model.forward(fixture.batch, fixture.masking, { discWeight: DISC_WEIGHT, sampledIds: fixture.sampledIds });
      assert.equal(out.discInputIds.toArray(), expected.get('disc_input_ids')!.toArray(), 'discriminator input');
      assert.equal(out.replaced.to('int64').toArray(), expected.get('replaced')!.toArray(), 'replaced labels');
      assert.equal(out.sampledIds.toArray(), fixture.sampledIds.toArray(), 'fed samples are used as they are');
      for (const [ours, key] of [[out.genLoss, 'gen_loss'], [out.discLoss, 'disc_loss'], [out.loss, 'loss'],
        [out.genLogits, 'gen_logits'], [out.discLogits, 'disc_logits']] as const) {
        const error = relativeError(ours, expected.get(key)!, key === 'disc_logits' ? fixture.batch.attentionMask : undefined);
        assert.ok(error <= TOLERANCE, `${key}: relative error ${error}`);
      }
      out.loss.backward();
    });
    const comparison = compareGradients(model, path.join(dir, 'grads.safetensors'));
    assert.equal(comparison.missing, []);
    assert.ok(comparison.worstRelative <= TOLERANCE, `worst relative gradient error ${comparison.worstRelative} at ${comparison.worstKey}`);
    assert.ok(comparison.worstNegligible <= 1e-6, `zero-in-theory gradients ${comparison.negligibleKeys} reach ${comparison.worstNegligible}`);
  });
}

test('the duplicated position carries its first slot\'s sample (the original token): not labelled replaced', () => {
  const [b, first] = fixture.duplicate;
  tidy(() => {
    const out = models.get('none')!.forward(fixture.batch, fixture.masking, { discWeight: DISC_WEIGHT, sampledIds: fixture.sampledIds });
    const position = (fixture.masking.positions.toArray() as number[][])[b][first];
    const original = (fixture.batch.inputIds.toArray() as number[][])[b][position];
    assert.is((out.discInputIds.toArray() as number[][])[b][position], original);
    assert.is((out.replaced.toArray() as number[][])[b][position], 0);
  });
});

/** Max |grad| of a parameter, 0 when it has none. */
function gradMax(model: ElectraModel, name: string): number {
  const parameter = model.namedParameters().find(([key]) => key === name)![1];
  return parameter.grad ? tidy(() => parameter.grad!.abs().max().item()) : 0;
}

test('gdes: the discriminator loss trains the delta and never E_G; the generator loss trains E_G and never the delta', () => {
  const model = models.get('gdes')!;
  const forward = () => model.forward(fixture.batch, fixture.masking, { discWeight: DISC_WEIGHT, sampledIds: fixture.sampledIds });
  model.zeroGrad();
  tidy(() => forward().discLoss.backward());
  assert.is(gradMax(model, GENERATOR_WORDS), 0, 'E_G gradient from the discriminator loss');
  assert.ok(gradMax(model, 'embedding_delta') > 0, 'delta gradient from the discriminator loss');
  assert.ok(gradMax(model, 'discriminator.discriminator_predictions.dense.weight') > 0);

  model.zeroGrad();
  tidy(() => forward().genLoss.backward());
  assert.is(gradMax(model, 'embedding_delta'), 0, 'delta gradient from the generator loss');
  assert.ok(gradMax(model, GENERATOR_WORDS) > 0, 'E_G gradient from the generator loss');
  model.zeroGrad();
});

test('es: both losses reach the one shared table', () => {
  const model = models.get('es')!;
  const forward = () => model.forward(fixture.batch, fixture.masking, { discWeight: DISC_WEIGHT, sampledIds: fixture.sampledIds });
  model.zeroGrad();
  tidy(() => forward().discLoss.backward());
  assert.ok(gradMax(model, GENERATOR_WORDS) > 0, 'E_G gradient from the discriminator loss');
  model.zeroGrad();
});

test('a forward + backward step leaves no tensor behind (liveTensorCount flat from the second step on)', () => {
  const model = models.get('gdes')!;
  using generator = new Generator({ seed: 3 });
  const step = () => tidy(() => {
    model.forward(fixture.batch, fixture.masking, { discWeight: DISC_WEIGHT, generator }).loss.backward();
  });
  model.zeroGrad();
  step();
  const before = liveTensorCount();
  step();
  step();
  assert.is(liveTensorCount(), before);
  model.zeroGrad();
});

test.run();
