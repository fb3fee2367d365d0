// The feature-extraction CLI: outputs equal our forward pass; bad input is a clean exit 2.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, tensor, tidy, noGrad } from '../src/tensor';
import { savePretrained } from '../src/io';
import { DebertaV2ForMaskedLM } from '../src/models';
import { parseDebertaConfig } from '../src/models/deberta/config';
import { readTensors } from './helpers/parity';

const CLI = path.join(__dirname, '..', 'src', 'encode.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-encode-'));
const config = parseDebertaConfig({
  vocab_size: 40, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32,
  relative_attention: true, pos_att_type: ['p2c', 'c2p'], position_buckets: 8, share_att_key: true,
  norm_rel_ebd: 'layer_norm', position_biased_input: false, max_position_embeddings: 32,
});
const batch = { input_ids: [[1, 5, 6, 7, 2], [1, 9, 2, 0, 0]], attention_mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]] };

function run(input: unknown, output = path.join(dir, 'out.safetensors')) {
  const file = path.join(dir, 'batch.json');
  fs.writeFileSync(file, typeof input === 'string' ? input : JSON.stringify(input));
  return spawnSync(process.execPath, [CLI, '--model', path.join(dir, 'model'), '--input', file, '--output', output, '--threads', '1'], { encoding: 'utf8' });
}

test.before(() => {
  const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: 2 }) });
  savePretrained(model, path.join(dir, 'model'));
  model.dispose();
});
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('writes float32 last_hidden_state and logits equal to the forward pass', () => {
  const result = run(batch);
  assert.is(result.status, 0, result.stderr);
  const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: 2 }) }).eval();
  try {
    tidy(() => {
      const written = readTensors(path.join(dir, 'out.safetensors'));
      const ours = noGrad(() => model.forward({ inputIds: tensor(batch.input_ids, { dtype: 'int64' }), attentionMask: tensor(batch.attention_mask, { dtype: 'int64' }) }));
      assert.equal([...written.keys()].sort(), ['last_hidden_state', 'logits']);
      assert.is(written.get('last_hidden_state')!.dtype, 'float32');
      assert.ok(written.get('last_hidden_state')!.sub(ours.lastHiddenState).abs().max().item() <= 1e-6); // thread counts differ
      assert.ok(written.get('logits')!.sub(ours.logits).abs().max().item() <= 1e-6);
    });
  } finally {
    model.dispose();
  }
});

for (const [what, input, message] of [
  ['ragged rows', { input_ids: [[1, 2, 3], [1, 2]] }, '"input_ids"[1] has 2 entries'],
  ['an id outside the vocabulary', { input_ids: [[1, 2, 40]] }, '"input_ids"[0][2] = 40 is not a token id in [0, 40)'],
  ['a mask of another shape', { input_ids: [[1, 2]], attention_mask: [[1, 1, 1]] }, '"attention_mask"[0] has 3 entries'],
  ['a missing input_ids', { attention_mask: [[1]] }, '"input_ids" must be a non-empty array'],
  ['invalid JSON', '{"input_ids": [[1,', 'not valid JSON'],
] as const) {
  test(`bad input (${what}) exits 2 naming the key`, () => {
    const result = run(input);
    assert.is(result.status, 2);
    assert.match(result.stderr, message);
    assert.match(result.stderr, 'batch.json');
  });
}

test('a missing model directory or option exits 2', () => {
  const missing = spawnSync(process.execPath, [CLI, '--model', path.join(dir, 'nope'), '--input', 'x.json', '--output', 'y'], { encoding: 'utf8' });
  assert.is(missing.status, 2);
  assert.match(missing.stderr, 'nope: no such model directory');
  const usage = spawnSync(process.execPath, [CLI, '--model', dir], { encoding: 'utf8' });
  assert.is(usage.status, 2);
  assert.match(usage.stderr, 'encode: missing required options --input, --output');
  assert.not.match(usage.stderr, /\n./);
});

test.run();
