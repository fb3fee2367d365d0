// Our DeBERTa-V2/V3 against HuggingFace transformers: the same weights give the same outputs
// and gradients, and a model we save loads in transformers with the same outputs.
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, setNumThreads, tidy } from '../src/tensor';
import { loadPretrained, savePretrained, readConfig } from '../src/io';
import { createModel, DebertaV2ForMaskedLM, DebertaV2Model, PreTrainedModule } from '../src/models';
import {
  generateReference, removeDir, readBatch, readTensors, maxAbsDiffAtTokens, compareGradients, hfCheck,
} from './helpers/parity';

setNumThreads(2);

const CONFIGS = ['deberta-v3', 'deberta-v3-long', 'deberta-v3-conv', 'deberta-generator', 'deberta-v2'];
const FORWARD_TOLERANCE = 1e-5;
const GRADIENT_TOLERANCE = 1e-4;

let reference = '';
test.before(() => {
  reference = generateReference(CONFIGS);
});
test.after(() => removeDir(reference));

function forwardErrors(model: PreTrainedModule, configDir: string): { hidden: number; logits: number } {
  return tidy(() => {
    const batch = readBatch(configDir);
    const expected = readTensors(path.join(configDir, 'outputs.safetensors'));
    const out = (model as DebertaV2ForMaskedLM).forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
    return {
      hidden: maxAbsDiffAtTokens(out.lastHiddenState, expected.get('last_hidden_state')!, batch.attentionMask),
      logits: maxAbsDiffAtTokens(out.logits, expected.get('logits')!, batch.attentionMask),
    };
  });
}

for (const name of CONFIGS) {
  for (const [subdir, file] of [['model', 'model.safetensors'], ['model-bin', 'pytorch_model.bin']]) {
    test(`${name}: forward from HF's ${file} matches last_hidden_state and logits`, () => {
      const { model, info } = loadPretrained(path.join(reference, name, subdir));
      try {
        assert.is(info.architecture, 'DebertaV2ForMaskedLM');
        assert.ok(info.file.endsWith(file), info.file);
        model.eval();
        const errors = forwardErrors(model, path.join(reference, name));
        assert.ok(errors.hidden <= FORWARD_TOLERANCE, `last_hidden_state max abs error ${errors.hidden}`);
        assert.ok(errors.logits <= FORWARD_TOLERANCE, `logits max abs error ${errors.logits}`);
      } finally {
        model.dispose();
      }
    });
  }

  test(`${name}: gradient of every parameter for the MLM loss matches torch`, () => {
    const dir = path.join(reference, name);
    const model = loadPretrained(path.join(dir, 'model')).model as DebertaV2ForMaskedLM;
    try {
      model.eval();
      tidy(() => {
        const batch = readBatch(dir);
        const { loss } = model.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask, labels: batch.labels });
        const expectedLoss = readTensors(path.join(dir, 'outputs.safetensors')).get('loss')!.item();
        assert.ok(Math.abs(loss!.item() - expectedLoss) <= 1e-5, `loss ${loss!.item()} vs ${expectedLoss}`);
        loss!.backward();
      });
      const comparison = compareGradients(model, path.join(dir, 'grads.safetensors'));
      assert.equal(comparison.missing, []);
      assert.ok(comparison.worstRelative <= GRADIENT_TOLERANCE,
        `worst relative gradient error ${comparison.worstRelative} at ${comparison.worstKey}`);
      assert.ok(comparison.worstNegligible <= 1e-6, `zero-in-theory gradients ${comparison.negligibleKeys} reach ${comparison.worstNegligible}`);
    } finally {
      model.dispose();
    }
  });

  test(`${name}: a model initialised and saved by camemberta loads in transformers with the same outputs`, () => {
    const dir = path.join(reference, name);
    const config = readConfig(path.join(dir, 'model'));
    const model = createModel('DebertaV2ForMaskedLM', config, { generator: new Generator({ seed: 7 }) }) as DebertaV2ForMaskedLM;
    const saved = path.join(reference, `${name}-ours`);
    try {
      model.eval();
      savePretrained(model, saved, { format: name === 'deberta-v3' ? 'bin' : 'safetensors' });
      const report = hfCheck(saved, path.join(dir, 'inputs.safetensors'), path.join(saved, 'hf-outputs.safetensors'));
      assert.is(report.model_class, 'DebertaV2ForMaskedLM');
      assert.equal(report.missing_keys, []);
      assert.equal(report.unexpected_keys, []);
      assert.equal(report.mismatched_keys, []);
      tidy(() => {
        const batch = readBatch(dir);
        const hf = readTensors(path.join(saved, 'hf-outputs.safetensors'));
        const ours = model.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
        const hidden = maxAbsDiffAtTokens(ours.lastHiddenState, hf.get('last_hidden_state')!, batch.attentionMask);
        const logits = maxAbsDiffAtTokens(ours.logits, hf.get('logits')!, batch.attentionMask);
        assert.ok(hidden <= FORWARD_TOLERANCE, `last_hidden_state max abs error ${hidden}`);
        assert.ok(logits <= FORWARD_TOLERANCE, `logits max abs error ${logits}`);
      });
    } finally {
      model.dispose();
    }
  });
}

test('DebertaV2Model saved by camemberta loads in transformers AutoModel; it also loads from a masked-LM checkpoint', () => {
  const dir = path.join(reference, 'deberta-v3-conv');
  const config = readConfig(path.join(dir, 'model'));
  const base = createModel('DebertaV2Model', config, { generator: new Generator({ seed: 3 }), init: 'truncated' }) as DebertaV2Model;
  const saved = path.join(reference, 'base-ours');
  try {
    base.eval();
    savePretrained(base, saved);
    const report = hfCheck(saved, path.join(dir, 'inputs.safetensors'), path.join(saved, 'hf-outputs.safetensors'), 'AutoModel');
    assert.is(report.model_class, 'DebertaV2Model');
    assert.equal([report.missing_keys, report.unexpected_keys], [[], []]);
    tidy(() => {
      const batch = readBatch(dir);
      const hf = readTensors(path.join(saved, 'hf-outputs.safetensors'));
      const ours = base.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
      assert.ok(maxAbsDiffAtTokens(ours.lastHiddenState, hf.get('last_hidden_state')!, batch.attentionMask) <= FORWARD_TOLERANCE);
    });
  } finally {
    base.dispose();
  }
  // The encoder of HF's masked-LM checkpoint: keys lose their `deberta.` prefix, the head is dropped.
  const { model, info } = loadPretrained(path.join(dir, 'model'), { architecture: 'DebertaV2Model' });
  try {
    assert.ok(info.ignored.some((key) => key.startsWith('cls.predictions.')), `ignored: ${info.ignored}`);
    model.eval();
    tidy(() => {
      const batch = readBatch(dir);
      const expected = readTensors(path.join(dir, 'outputs.safetensors')).get('last_hidden_state')!;
      const out = (model as unknown as DebertaV2Model).forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
      assert.ok(maxAbsDiffAtTokens(out.lastHiddenState, expected, batch.attentionMask) <= FORWARD_TOLERANCE);
    });
  } finally {
    model.dispose();
  }
});

test.run();
