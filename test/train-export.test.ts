// A short ELECTRA + GDES run's export loads in transformers (no missing or unexpected keys, the
// tokenizer through AutoTokenizer) and computes what our trained model computes, the RTD head on
// top of AutoModel's output; TensorBoard's reader reads back every scalar of log.jsonl.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, writeConfig, runTrain, EXPORT_JS, DEMO_TEXT } from './helpers/train';
import { runPython, pythonScript } from './helpers/python';
import { spawnSync } from 'child_process';
import { embedding, tensor, tidy, noGrad, Tensor } from '../src/tensor';
import { writeSafetensors, toSafetensorsEntry } from '../src/io';
import { loadTokenizer } from '../src/tokenizer/index';
import { loadTrainConfig, parseTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';
import { ElectraModel } from '../src/pretrain/electra';
import { buildModelConfigs, createPretrainingModel } from '../src/pretrain/models';
import { loadCheckpoint, newestCheckpoint, checkpointTokenizer } from '../src/pretrain/checkpoint';

const root = tempDir('train-export');
const run = path.join(root, 'run');
const TEXT = 'Le soleil se levait sur la petite ville, et les rues étaient encore vides.';

test('a run ends with an export, a final checkpoint and logs', async () => {
  const file = writeConfig(root, microConfig(run, { max_steps: 8, export: { at_end: true, pytorch_bin: true } }));
  const result = await train({ config: loadTrainConfig(file, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: file, log: () => {} });
  assert.is(result.exportDir, path.join(run, 'export'));
  for (const name of ['discriminator', 'generator']) {
    const files = fs.readdirSync(path.join(run, 'export', name)).sort();
    for (const expected of ['config.json', 'model.safetensors', 'pytorch_model.bin', 'spm.model', 'tokenizer_config.json']) assert.ok(files.includes(expected), `${name}/${expected} in ${files}`);
  }
  assert.ok(fs.existsSync(path.join(run, 'export', 'discriminator', 'rtd_head.safetensors')));
});

test('transformers loads the export and matches our outputs to 1e-5', async () => {
  const checkpointDir = newestCheckpoint(run)!;
  const tokenizer = await loadTokenizer(checkpointTokenizer(checkpointDir));
  const encoded = [TEXT, 'Il pleuvait.'].map((line) => [tokenizer.special.ids.cls, ...tokenizer.sp.encode(line), tokenizer.special.ids.sep]);
  const L = Math.max(...encoded.map((row) => row.length));
  const ids = encoded.flatMap((row) => [...row, ...Array(L - row.length).fill(tokenizer.special.ids.pad)]);
  const mask = encoded.flatMap((row) => [...Array(row.length).fill(1), ...Array(L - row.length).fill(0)]);
  tidy(() => {
    const checkpoint = loadCheckpoint(checkpointDir);
    const config = parseTrainConfig(checkpoint.meta.config, 'trainer.json');
    const configs = buildModelConfigs(config, { vocabSize: tokenizer.vocabSize, ids: tokenizer.special.ids }, 'trainer.json');
    const model = createPretrainingModel(config, configs, { init: 'none' }) as ElectraModel;
    model.loadStateDict(checkpoint.model);
    model.eval();
    const inputIds = tensor(ids, { shape: [2, L], dtype: 'int64' }) as Tensor<'int64'>;
    const attentionMask = tensor(mask, { shape: [2, L], dtype: 'int64' });
    const outputs = noGrad(() => {
      // The discriminator as it trains: stop_gradient(E_G)[ids] + E_delta[ids].
      const words = embedding(model.generatorEmbeddings, inputIds).add(embedding(model.embedding_delta!, inputIds));
      const hidden = model.discriminator.deberta.forward({ inputIds, attentionMask }, { wordEmbeddings: words }).lastHiddenState;
      return {
        disc_hidden: hidden,
        rtd_logits: model.discriminator.discriminator_predictions.forward(hidden),
        gen_logits: model.generator.forward({ inputIds, attentionMask }).logits,
      };
    });
    const save = (file: string, tensors: Record<string, Tensor>) => writeSafetensors(file,
      new Map(Object.entries(tensors).map(([k, t]) => [k, toSafetensorsEntry(t, k)] as const)), { format: 'pt' });
    save(path.join(root, 'inputs.safetensors'), { input_ids: inputIds, attention_mask: attentionMask });
    save(path.join(root, 'ours.safetensors'), outputs);
    model.dispose();
  });
  const report = JSON.parse(runPython([pythonScript('pretrain_export_check.py'), path.join(run, 'export'),
    path.join(root, 'inputs.safetensors'), path.join(root, 'ours.safetensors'), '--text', TEXT]).stdout.trim().split('\n').pop()!);
  assert.equal(report.discriminator, { class: 'DebertaV2Model', missing: [], unexpected: [] });
  assert.equal(report.generator, { class: 'DebertaV2ForMaskedLM', missing: [], unexpected: [] });
  assert.equal(report.rtd_head_keys, ['discriminator_predictions.dense.bias', 'discriminator_predictions.dense.weight',
    'discriminator_predictions.dense_prediction.bias', 'discriminator_predictions.dense_prediction.weight']);
  console.log(`transformers ${report.transformers} vs ours: ${['disc_hidden', 'rtd_logits', 'gen_logits'].map((k) => `${k} ${report[k].relative.toExponential(1)}`).join(', ')} (relative)`);
  for (const output of ['disc_hidden', 'rtd_logits', 'gen_logits']) {
    assert.ok(report[output].relative <= 1e-5, `${output}: ${JSON.stringify(report[output])}`);
  }
  assert.equal(report.discriminator_tokenizer.ids, encoded[0], 'AutoTokenizer encodes as we do');
  assert.equal(report.generator_tokenizer.ids, encoded[0]);
});

test('TensorBoard reads back every scalar of log.jsonl with the same steps and values', () => {
  const report = JSON.parse(runPython([pythonScript('tensorboard_reader.py'), '--compare', path.join(run, 'log.jsonl'), path.join(run, 'tensorboard')]).stdout.trim());
  assert.equal(report.mismatches, []);
  const lines = fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const numeric = lines.reduce((n, line) => n + Object.entries(line).filter(([k, v]) => k !== 'step' && typeof v === 'number').length, 0);
  assert.is(report.compared, numeric);
  const keys = new Set(lines.flatMap((line) => Object.keys(line)));
  for (const key of ['loss', 'gen_loss', 'disc_loss', 'gen_accuracy', 'disc_accuracy', 'disc_precision', 'disc_recall', 'replaced_fraction',
    'lr', 'grad_norm', 'loss_scale', 'tokens_per_s', 'elapsed_s', 'eval_gen_accuracy', 'eval_disc_accuracy', 'eval_disc_auc']) {
    assert.ok(keys.has(key), `log.jsonl has ${key}`);
  }
});

test('export.js exports a checkpoint on its own, atomically replacing the target', () => {
  const target = path.join(root, 'exported');
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, 'stale.txt'), 'old');
  const result = spawnSync(process.execPath, [EXPORT_JS, '--checkpoint', run, '--output', target], { encoding: 'utf8' });
  assert.is(result.status, 0, result.stderr);
  assert.not.ok(fs.existsSync(path.join(target, 'stale.txt')));
  for (const name of ['discriminator', 'generator']) {
    assert.ok(fs.readFileSync(path.join(target, name, 'model.safetensors')).equals(fs.readFileSync(path.join(run, 'export', name, 'model.safetensors'))), `${name} equals the run's own export`);
  }
  const bad = spawnSync(process.execPath, [EXPORT_JS, '--checkpoint', root, '--output', target], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /export\.js: .*neither a checkpoint/);
  void runTrain;
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
