// savePretrained / loadPretrained behaviour beyond parity: formats, stale files, HF's key
// prefix rules, tolerated keys, and errors that name the file.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, tidy, zeros, saveTensors, Tensor } from '../src/tensor';
import { savePretrained, loadPretrained, checkpointTensors } from '../src/io';
import { DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification, DebertaV2Model } from '../src/models';
import { parseDebertaConfig } from '../src/models/deberta/config';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-pretrained-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));
const config = parseDebertaConfig({
  vocab_size: 30, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16,
  relative_attention: true, pos_att_type: ['p2c', 'c2p'], position_buckets: 4, share_att_key: true,
  norm_rel_ebd: 'layer_norm', position_biased_input: false, max_position_embeddings: 16, embedding_size: 12,
});

function sameWeights(a: DebertaV2Model, b: DebertaV2Model): boolean {
  return tidy(() => [...a.stateDict()].every(([key, t]) => b.stateDict().get(key)!.sub(t).abs().max().item() === 0));
}

test('both formats, tied decoder not written, stale weights of an older save removed, no staging left', () => {
  const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: 1 }) });
  const dir = path.join(root, 'mlm');
  try {
    assert.not.ok(checkpointTensors(model).has('cls.predictions.decoder.weight'));
    savePretrained(model, dir, { format: 'both' });
    assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'pytorch_model.bin']);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(json.architectures, ['DebertaV2ForMaskedLM']);
    assert.is(json.embedding_size, 12);
    savePretrained(model, dir, { format: 'safetensors' });
    assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors']);
    assert.equal(fs.readdirSync(root).filter((name) => name.includes('staging')), []);
    const loaded = loadPretrained(dir).model as DebertaV2ForMaskedLM;
    assert.ok(sameWeights(loaded.deberta, model.deberta));
    assert.ok(loaded.cls!.predictions.decoder.weight === loaded.deberta.embeddings.word_embeddings.weight, 'tie rebuilt');
    loaded.dispose();
  } finally {
    model.dispose();
  }
});

test('a head model from a base checkpoint: keys gain the deberta. prefix, the new head is reported', () => {
  const base = new DebertaV2Model(config, { generator: new Generator({ seed: 2 }) });
  const dir = path.join(root, 'base');
  try {
    savePretrained(base, dir);
    const { model, info } = loadPretrained(dir, { architecture: 'DebertaV2ForSequenceClassification' });
    assert.equal(info.missing, []);
    assert.equal(info.newlyInitialized.sort(), ['classifier.bias', 'classifier.weight', 'pooler.dense.bias', 'pooler.dense.weight']);
    assert.ok(sameWeights((model as DebertaV2ForSequenceClassification).deberta, base));
    model.dispose();
  } finally {
    base.dispose();
  }
});

test('old checkpoints: embeddings.position_ids is tolerated; a missing key fails naming it and the file', () => {
  const base = new DebertaV2Model(config, { generator: new Generator({ seed: 3 }) });
  const dir = path.join(root, 'old');
  try {
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(root, 'base', 'config.json'), path.join(dir, 'config.json'));
    tidy(() => {
      const tensors = new Map<string, Tensor>(base.stateDict());
      tensors.set('embeddings.position_ids', zeros([1, 16], { dtype: 'int64' }));
      saveTensors(path.join(dir, 'pytorch_model.bin'), tensors);
    });
    const { model, info } = loadPretrained(dir);
    assert.equal(info.ignored, ['embeddings.position_ids']);
    model.dispose();
    tidy(() => {
      const tensors = new Map<string, Tensor>(base.stateDict());
      tensors.delete('encoder.rel_embeddings.weight');
      saveTensors(path.join(dir, 'pytorch_model.bin'), tensors);
    });
    assert.throws(() => loadPretrained(dir), /pytorch_model\.bin -> DebertaV2Model[\s\S]*missing keys \(1\): encoder\.rel_embeddings\.weight/);
  } finally {
    base.dispose();
  }
});

test('a directory without weights or config is a clear error', () => {
  const empty = path.join(root, 'empty');
  fs.mkdirSync(empty);
  assert.throws(() => loadPretrained(empty), /empty: no config\.json/);
  fs.copyFileSync(path.join(root, 'base', 'config.json'), path.join(empty, 'config.json'));
  assert.throws(() => loadPretrained(empty), /no weights \(looked for model\.safetensors/);
});

test.run();
