// The masked-LM objective (src/pretrain/mlm.ts: the head run on the chosen slots only, the loss
// a weighted mean over them) against transformers' own DebertaV2ForMaskedLM / RobertaForMaskedLM
// forward with labels (-100 except the original token at each chosen position): the same loss,
// logits at the slots and gradient of every parameter (test/python/electra_reference.py).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, Tensor, setNumThreads, tidy } from '../src/tensor';
import { configToJson } from '../src/io';
import { DebertaV2ForMaskedLM, RobertaForMaskedLM } from '../src/models';
import { tinyDebertaConfig } from '../src/models/presets';
import { parseRobertaConfig } from '../src/models/roberta/config';
import { Masking, SpecialTokenIds } from '../src/pretrain/electra';
import { bertMask, maskedLanguageModelLoss } from '../src/pretrain/mlm';
import { compareGradients, readTensors, removeDir } from './helpers/parity';
import { maskingInputs, paddedBatch, randomizeParameters, runObjectiveReference, writeReferenceCase } from './helpers/objective';

setNumThreads(2);

const VOCAB = 100;
const TOLERANCE = 1e-4;
const LENGTHS = [40, 33, 21];
const BERT_MASKING = { maskProb: 0.15, maskTokenProb: 0.8, randomTokenProb: 0.1 };

interface Case {
  name: 'deberta' | 'roberta';
  model: DebertaV2ForMaskedLM | RobertaForMaskedLM;
  special: SpecialTokenIds;
  batch: { inputIds: Tensor<'int64'>; attentionMask: Tensor<'int64'> };
  masking: Masking;
}

function deberta(): DebertaV2ForMaskedLM {
  const config = tinyDebertaConfig({
    vocab_size: VOCAB, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64,
    embedding_size: 48, position_buckets: 16, max_position_embeddings: 64, conv_kernel_size: 0,
    hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  });
  using generator = new Generator({ seed: 1 });
  return new DebertaV2ForMaskedLM(config, { generator });
}

function roberta(): RobertaForMaskedLM {
  const config = parseRobertaConfig({
    vocab_size: VOCAB, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64,
    max_position_embeddings: 64, type_vocab_size: 1, layer_norm_eps: 1e-5, pad_token_id: 1, bos_token_id: 0, eos_token_id: 2,
    hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  }, 'mlm-parity roberta');
  using generator = new Generator({ seed: 2 });
  return new RobertaForMaskedLM(config, { generator });
}

let root = '';
const cases: Case[] = [];

test.before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-mlm-'));
  const specs = [
    { name: 'deberta', model: deberta(), special: { pad: 0, cls: 1, sep: 2, mask: VOCAB - 1 }, modelType: 'deberta-v2' },
    { name: 'roberta', model: roberta(), special: { cls: 0, pad: 1, sep: 2, mask: VOCAB - 1 }, modelType: 'roberta' },
  ] as const;
  for (const [i, { name, model, special, modelType }] of specs.entries()) {
    using generator = new Generator({ seed: 10 + i });
    randomizeParameters(model, generator);
    model.eval();
    const batch = paddedBatch(LENGTHS, VOCAB, special, 3, generator);
    const masking = bertMask(batch.inputIds, batch.attentionMask, special, BERT_MASKING, VOCAB, generator);
    cases.push({ name, model, special, batch, masking });
    writeReferenceCase(root, name, {
      spec: { kind: 'mlm', model_type: modelType },
      configs: { 'config.json': configToJson(model.config, model.architecture) },
      parameters: model.namedParameters(),
      inputs: maskingInputs(batch, masking),
    });
  }
  runObjectiveReference(root, cases.map((c) => c.name));
});

test.after(() => {
  for (const c of cases) {
    c.model.dispose();
    for (const t of [...Object.values(c.batch), ...Object.values(c.masking)]) t.dispose();
  }
  if (root) removeDir(root);
});

for (const name of ['deberta', 'roberta'] as const) {
  test(`${name}: maskedLanguageModelLoss equals HF's labels loss; slot logits and every parameter's gradient match`, () => {
    const c = cases.find((x) => x.name === name)!;
    const dir = path.join(root, name);
    c.model.zeroGrad();
    tidy(() => {
      const expected = readTensors(path.join(dir, 'outputs.safetensors'));
      const { loss, logits } = maskedLanguageModelLoss(c.model, c.batch, c.masking);
      const expectedLoss = expected.get('loss')!.item();
      assert.ok(Math.abs(loss.item() - expectedLoss) <= TOLERANCE * Math.abs(expectedLoss), `loss ${loss.item()} vs HF ${expectedLoss}`);
      const reference = expected.get('logits')!;
      const error = logits.sub(reference).abs().max().item() / reference.abs().max().item();
      assert.ok(error <= TOLERANCE, `slot logits: relative error ${error}`);
      loss.backward();
    });
    const comparison = compareGradients(c.model, path.join(dir, 'grads.safetensors'));
    assert.equal(comparison.missing, []);
    assert.ok(comparison.worstRelative <= TOLERANCE, `worst relative gradient error ${comparison.worstRelative} at ${comparison.worstKey}`);
    assert.ok(comparison.worstNegligible <= 1e-6, `zero-in-theory gradients ${comparison.negligibleKeys} reach ${comparison.worstNegligible}`);
  });
}

test('the masking fed to both sides holds [MASK]ed and kept slots, and no slot is counted twice', () => {
  for (const c of cases) {
    const weights = c.masking.weights.toArray() as number[][];
    const positions = c.masking.positions.toArray() as number[][];
    const input = c.masking.inputIds.toArray() as number[][];
    assert.equal(weights.map((row) => row.reduce((a, b) => a + b, 0)), [6, 5, 3], c.name);
    const used = positions.flatMap((row, b) => row.filter((_, n) => weights[b][n] > 0).map((p) => input[b][p]));
    assert.ok(used.includes(c.special.mask), `${c.name}: no [MASK] among the slots`);
    for (const [b, row] of positions.entries()) {
      const chosen = row.filter((_, n) => weights[b][n] > 0);
      assert.is(new Set(chosen).size, chosen.length, `${c.name} row ${b}: a position twice`);
    }
  }
});

test.run();
