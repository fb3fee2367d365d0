// Our RoBERTa against HuggingFace transformers (eager attention): outputs, gradients, reverse load.
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, setNumThreads, tidy, tensor } from '../src/tensor';
import { loadPretrained, savePretrained, readConfig } from '../src/io';
import { createModel, RobertaForMaskedLM, RobertaModel, robertaPositionIds } from '../src/models';
import {
  generateReference, removeDir, readBatch, readTensors, maxAbsDiffAtTokens, compareGradients, hfCheck,
} from './helpers/parity';

setNumThreads(2);

const NAME = 'roberta';
const FORWARD_TOLERANCE = 1e-5;

let reference = '';
let dir = '';
test.before(() => {
  reference = generateReference([NAME]);
  dir = path.join(reference, NAME);
});
test.after(() => removeDir(reference));

test('position ids count from pad_token_id + 1 over real tokens, pad_token_id at padding (fairseq)', () => {
  tidy(() => {
    const ids = tensor([[0, 5, 6, 2, 1, 1], [0, 7, 1, 8, 2, 1]], { dtype: 'int64' });
    assert.equal(robertaPositionIds(ids, 1).toArray(), [[2, 3, 4, 5, 1, 1], [2, 3, 1, 4, 5, 1]]);
  });
});

for (const [subdir, file] of [['model', 'model.safetensors'], ['model-bin', 'pytorch_model.bin']]) {
  test(`forward from HF's ${file} matches last_hidden_state and logits`, () => {
    const { model, info } = loadPretrained(path.join(dir, subdir));
    try {
      assert.is(info.architecture, 'RobertaForMaskedLM');
      model.eval();
      tidy(() => {
        const batch = readBatch(dir);
        const expected = readTensors(path.join(dir, 'outputs.safetensors'));
        const out = (model as RobertaForMaskedLM).forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
        const hidden = maxAbsDiffAtTokens(out.lastHiddenState, expected.get('last_hidden_state')!, batch.attentionMask);
        const logits = maxAbsDiffAtTokens(out.logits, expected.get('logits')!, batch.attentionMask);
        assert.ok(hidden <= FORWARD_TOLERANCE, `last_hidden_state max abs error ${hidden}`);
        assert.ok(logits <= FORWARD_TOLERANCE, `logits max abs error ${logits}`);
      });
    } finally {
      model.dispose();
    }
  });
}

test('gradient of every parameter for the MLM loss matches torch', () => {
  const model = loadPretrained(path.join(dir, 'model')).model as RobertaForMaskedLM;
  try {
    model.eval();
    tidy(() => {
      const batch = readBatch(dir);
      model.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask, labels: batch.labels }).loss!.backward();
    });
    const comparison = compareGradients(model, path.join(dir, 'grads.safetensors'));
    assert.equal(comparison.missing, []);
    assert.ok(comparison.worstRelative <= 1e-4, `worst relative gradient error ${comparison.worstRelative} at ${comparison.worstKey}`);
    assert.ok(comparison.worstNegligible <= 1e-6);
  } finally {
    model.dispose();
  }
});

for (const [architecture, className] of [['RobertaForMaskedLM', 'AutoModelForMaskedLM'], ['RobertaModel', 'AutoModel']]) {
  test(`${architecture} initialised and saved by camemberta loads in transformers ${className} with the same outputs`, () => {
    const config = readConfig(path.join(dir, 'model'));
    const model = createModel(architecture, config, { generator: new Generator({ seed: 11 }) });
    const saved = path.join(reference, `${architecture}-ours`);
    try {
      model.eval();
      savePretrained(model, saved, { format: 'both' });
      const report = hfCheck(saved, path.join(dir, 'inputs.safetensors'), path.join(saved, 'hf-outputs.safetensors'), className);
      assert.is(report.model_class, architecture);
      assert.equal([report.missing_keys, report.unexpected_keys, report.mismatched_keys], [[], [], []]);
      tidy(() => {
        const batch = readBatch(dir);
        const hf = readTensors(path.join(saved, 'hf-outputs.safetensors'));
        const ours = (model as RobertaForMaskedLM | RobertaModel).forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
        assert.ok(maxAbsDiffAtTokens(ours.lastHiddenState, hf.get('last_hidden_state')!, batch.attentionMask) <= FORWARD_TOLERANCE);
        if ('logits' in ours) assert.ok(maxAbsDiffAtTokens(ours.logits, hf.get('logits')!, batch.attentionMask) <= FORWARD_TOLERANCE);
      });
    } finally {
      model.dispose();
    }
  });
}

test.run();
