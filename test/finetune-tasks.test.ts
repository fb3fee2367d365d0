// The other tasks and model sources, end to end on small data: sequence classification (JSONL pairs)
// saved as DebertaV2ForSequenceClassification and checked in transformers; biaffine dependency
// parsing with UAS/LAS, its head saved beside the encoder, predict.js writing trees that score as
// results.json says; token classification over RoBERTa and DeBERTa directories saved by
// transformers itself; and a training step that leaks no tensor.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from './helpers/train';
import { runPython, pythonScript } from './helpers/python';
import { FINETUNE_JS, PREDICT_JS, sequoiaSubset, microEncoder, runNodeScript, readResults } from './helpers/finetune';
import { readCorpus, wordArcs } from '../src/finetune/conllu';
import { attachmentScores } from '../src/finetune/metrics';
import { loadFinetuneConfig } from '../src/finetune/config';
import { finetune } from '../src/finetune/trainer';
import { liveTensorCount } from '../src/tensor';

const root = tempDir('finetune-tasks');
const encoder = microEncoder(root);
const train = sequoiaSubset('train', 40, path.join(root, 'train.conllu'));
const dev = sequoiaSubset('dev', 12, path.join(root, 'dev.conllu'));
const testFile = sequoiaSubset('test', 12, path.join(root, 'test.conllu'));

/** Sentence pairs from a CoNLL-U file's `# text` lines: "same" when both halves come from one sentence. */
function pairs(conllu: string, file: string): string {
  const texts = fs.readFileSync(conllu, 'utf8').split('\n').filter((l) => l.startsWith('# text = ')).map((l) => l.slice(9));
  const lines = texts.map((text, i) => {
    const words = text.split(' ');
    const half = Math.ceil(words.length / 2);
    const other = texts[(i + 1) % texts.length].split(' ');
    const same = i % 2 === 0;
    return JSON.stringify({ text: words.slice(0, half).join(' '), text_pair: (same ? words.slice(half) : other.slice(Math.ceil(other.length / 2))).join(' '), label: same ? 'same' : 'different' });
  });
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

test('sequence classification on JSONL pairs: accuracy and macro-F1, a model transformers loads and agrees with', () => {
  const out = path.join(root, 'seq');
  const trainPairs = pairs(train, path.join(root, 'train.jsonl'));
  const result = runNodeScript(FINETUNE_JS, ['--task', 'sequence-classification', '--model', encoder, '--train', trainPairs, '--dev', pairs(dev, path.join(root, 'dev.jsonl')),
    '--test', pairs(testFile, path.join(root, 'test.jsonl')), '--output-dir', out, '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--threads', '1', '--quiet']);
  assert.is(result.status, 0, result.stderr);
  const results = readResults(out);
  for (const split of ['dev', 'test']) {
    assert.ok(results[split].accuracy >= 0 && results[split].accuracy <= 1);
    assert.type(results[split].macro_f1, 'number');
    assert.equal(Object.keys(results[split].per_label).sort(), ['different', 'same']);
  }
  const predicted = path.join(root, 'seq.predicted.jsonl');
  assert.is(runNodeScript(PREDICT_JS, ['--model', out, '--input', path.join(root, 'test.jsonl'), '--output', predicted, '--threads', '1']).status, 0);
  const report = JSON.parse(runPython([pythonScript('finetune_hf_models.py'), 'sequence', path.join(out, 'model'), predicted], { timeoutMs: 600_000 }).stdout.trim().split('\n').pop()!);
  assert.equal([report.class, report.missing, report.unexpected], ['DebertaV2ForSequenceClassification', [], []]);
  assert.is(report.examples, 12);
  assert.is(report.equal, report.examples, JSON.stringify(report.mismatches));
  // A line without a label in training data: the file and line are named.
  fs.appendFileSync(trainPairs, '{"text": "Une phrase sans étiquette."}\n');
  const bad = runNodeScript(FINETUNE_JS, ['--task', 'sequence-classification', '--model', encoder, '--train', trainPairs, '--dev', path.join(root, 'dev.jsonl'), '--output-dir', path.join(root, 'seq-bad'), '--threads', '1']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /train\.jsonl:41: no "label" field/);
});

test('dependency parsing: UAS/LAS in results.json, the biaffine head beside the encoder, predict.js writes scoring trees', () => {
  const out = path.join(root, 'parse');
  const result = runNodeScript(FINETUNE_JS, ['--task', 'dependency-parsing', '--model', encoder, '--train', train, '--dev', dev, '--test', testFile, '--output-dir', out,
    '--epochs', '2', '--batch-size', '8', '--lr', '2e-3', '--threads', '1', '--quiet', '--set', 'parser.arc_size=64', '--set', 'parser.rel_size=32']);
  assert.is(result.status, 0, result.stderr);
  const results = readResults(out);
  assert.ok(results.test.uas > 0 && results.test.uas <= 1 && results.test.las <= results.test.uas, JSON.stringify(results.test));
  for (const name of ['config.json', 'model.safetensors', 'spm.model', 'parser_head.safetensors', 'parser_head.json']) assert.ok(fs.existsSync(path.join(out, 'model', name)), name);
  const report = JSON.parse(runPython([pythonScript('finetune_hf_models.py'), 'encoder', path.join(out, 'model')], { timeoutMs: 600_000 }).stdout.trim().split('\n').pop()!);
  assert.equal(report, { class: 'DebertaV2Model', missing: [], unexpected: [] });
  const predicted = path.join(root, 'parse.predicted.conllu');
  assert.is(runNodeScript(PREDICT_JS, ['--model', out, '--input', testFile, '--output', predicted, '--threads', '1']).status, 0);
  const parses = wordArcs(readCorpus(predicted));
  for (const { heads } of parses) {
    assert.is(heads.filter((h) => h === 0).length, 1, 'one root per sentence');
    heads.forEach((_, w) => {
      let v = w + 1;
      for (let k = 0; k <= heads.length && v !== 0; k++) v = heads[v - 1];
      assert.is(v, 0, 'every word reaches the root');
    });
  }
  const rescored = attachmentScores(wordArcs(readCorpus(testFile)), parses);
  assert.ok(Math.abs(rescored.uas - results.test.uas) < 1e-12 && Math.abs(rescored.las - results.test.las) < 1e-12, `${JSON.stringify(rescored)} vs ${JSON.stringify(results.test)}`);
});

test('token classification over RoBERTa and DeBERTa directories saved by transformers', () => {
  runPython([pythonScript('finetune_hf_models.py'), 'make', encoder, path.join(root, 'hf')], { timeoutMs: 600_000 });
  for (const [name, architecture] of [['roberta', 'RobertaForTokenClassification'], ['deberta', 'DebertaV2ForTokenClassification']]) {
    const out = path.join(root, `hf-${name}`);
    const result = runNodeScript(FINETUNE_JS, ['--task', 'token-classification', '--model', path.join(root, 'hf', name), '--train', train, '--dev', dev, '--test', testFile,
      '--output-dir', out, '--epochs', '1', '--batch-size', '8', '--lr', '1e-3', '--threads', '1', '--quiet']);
    assert.is(result.status, 0, result.stderr);
    const predicted = path.join(out, 'predicted.conllu');
    assert.is(runNodeScript(PREDICT_JS, ['--model', out, '--input', testFile, '--output', predicted, '--threads', '1']).status, 0);
    const report = JSON.parse(runPython([pythonScript('finetune_token_check.py'), path.join(out, 'model'), testFile, predicted], { timeoutMs: 600_000 }).stdout.trim().split('\n').pop()!);
    assert.equal([report.class, report.missing, report.unexpected], [architecture, [], []]);
    assert.is(report.equal, report.words, `${name}: ${JSON.stringify(report.mismatches)}`);
  }
});

test('a fine-tuning step leaks no tensor (live count flat from the second step on)', async () => {
  // One sentence 40 times: every batch has the same length, so the encoder's per-length
  // relative-position tables are all made in the first step and the count can be flat.
  const sentence = fs.readFileSync(train, 'utf8').split('\n\n')[0];
  const sameLength = path.join(root, 'same-length.conllu');
  fs.writeFileSync(sameLength, `${Array(40).fill(sentence).join('\n\n')}\n\n`);
  for (const task of ['token-classification', 'dependency-parsing'] as const) {
    const config = loadFinetuneConfig(undefined, {
      task, model: encoder, train: sameLength, dev, output_dir: path.join(root, `leak-${task}`), epochs: 3, batch_size: 4, threads: 1,
      'logging.progress': false, 'logging.tensorboard': false, 'parser.arc_size': 32, 'parser.rel_size': 16,
    });
    const counts: number[] = [];
    await finetune({ config, log: () => {}, onStep: () => counts.push(liveTensorCount()) });
    // Steps 1..10 of epoch 1 (the snapshot of the best epoch adds its copies once, after an epoch).
    const epoch = counts.slice(1, 10);
    assert.ok(epoch.every((n) => n === epoch[0]), `${task}: ${epoch.join(', ')}`);
    const afterEpochs = [counts[12], counts[22]];
    assert.is(afterEpochs[0], afterEpochs[1], `${task}: later epochs ${afterEpochs.join(', ')}`);
  }
});

test.run();
