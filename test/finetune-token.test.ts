// Token classification end to end on a few dozen Sequoia sentences: a micro pretraining's encoder is
// fine-tuned for UPOS, results.json holds dev/test scores, the saved directory loads in
// transformers' AutoModelForTokenClassification and predicts what we predict on every word, a
// second run with the same seed is identical, and bad inputs end in one line naming the file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from './helpers/train';
import { runPython, pythonScript } from './helpers/python';
import { FINETUNE_JS, PREDICT_JS, sequoiaSubset, microEncoder, runNodeScript, readResults } from './helpers/finetune';

const root = tempDir('finetune-token');
const encoder = microEncoder(root);
const train = sequoiaSubset('train', 40, path.join(root, 'train.conllu'));
const dev = sequoiaSubset('dev', 15, path.join(root, 'dev.conllu'));
// One word of the test set gets a tag train never had: a warning, and an error in the score.
const testFile = sequoiaSubset('test', 15, path.join(root, 'test.conllu'), (text) => text.replace('\tcela\tcela\tPRON\t', '\tcela\tcela\tZZZ\t'));
const common = ['--task', 'token-classification', '--model', encoder, '--train', train, '--dev', dev, '--test', testFile,
  '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--threads', '1', '--quiet'];

test('fine-tunes UPOS: results.json with dev and test scores, a saved model with its labels', () => {
  const out = path.join(root, 'run-a');
  const result = runNodeScript(FINETUNE_JS, [...common, '--output-dir', out, '--seed', '3']);
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stderr, /test\.conllu: \d+ words with labels the training file never had: .*ZZZ \(1\).*; they count as errors/);
  const results = readResults(out);
  for (const split of ['dev', 'test']) {
    assert.type(results[split].accuracy, 'number');
    assert.ok(results[split].accuracy > 0 && results[split].accuracy <= 1, `${split} accuracy ${results[split].accuracy}`);
    assert.ok(results[split].per_label.NOUN.support > 0);
  }
  assert.equal(results.test.per_label.ZZZ, { precision: 0, recall: 0, f1: 0, support: 1 });
  assert.is(results.history.length, 2);
  assert.is(results.steps, 10);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'model', 'config.json'), 'utf8'));
  assert.equal(config.architectures, ['DebertaV2ForTokenClassification']);
  const trainTags = [...new Set(fs.readFileSync(train, 'utf8').split('\n').filter((l) => /^[0-9]+\t/.test(l)).map((l) => l.split('\t')[3]))].sort();
  assert.equal(Object.values(config.id2label), trainTags);
  for (const name of ['model.safetensors', 'spm.model', 'tokenizer_config.json']) assert.ok(fs.existsSync(path.join(out, 'model', name)), name);
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  assert.ok(log.some((line) => typeof line.loss === 'number') && log.some((line) => typeof line.eval_accuracy === 'number'));
  assert.ok(fs.readdirSync(path.join(out, 'tensorboard')).length > 0);
});

test('transformers loads the saved model and predicts what we predict on every word', () => {
  const out = path.join(root, 'run-a');
  const predicted = path.join(root, 'predicted.conllu');
  const result = runNodeScript(PREDICT_JS, ['--model', out, '--input', testFile, '--output', predicted, '--threads', '1']);
  assert.is(result.status, 0, result.stderr);
  // Only the UPOS column differs from the input.
  const strip = (text: string) => text.split('\n').map((line) => line.split('\t').filter((_, i) => i !== 3).join('\t'));
  assert.equal(strip(fs.readFileSync(predicted, 'utf8')), strip(fs.readFileSync(testFile, 'utf8')));
  const report = JSON.parse(runPython([pythonScript('finetune_token_check.py'), path.join(out, 'model'), testFile, predicted], { timeoutMs: 600_000 }).stdout.trim().split('\n').pop()!);
  assert.equal([report.class, report.missing, report.unexpected], ['DebertaV2ForTokenClassification', [], []]);
  assert.ok(report.words > 200, `${report.words} words`);
  assert.is(report.equal, report.words, JSON.stringify(report.mismatches));
  // transformers' accuracy on the gold file is ours (the same predictions, the same unseen tag).
  assert.ok(Math.abs(report.transformers_accuracy - readResults(out).test.accuracy) < 1e-12);
});

test('the same seed gives the same run; --random-init trains the architecture from scratch', () => {
  const again = path.join(root, 'run-b');
  assert.is(runNodeScript(FINETUNE_JS, [...common, '--output-dir', again, '--seed', '3']).status, 0);
  const a = readResults(path.join(root, 'run-a'));
  const b = readResults(again);
  assert.equal([b.dev.accuracy, b.test.accuracy, b.history.map((h: { loss: number }) => h.loss)], [a.dev.accuracy, a.test.accuracy, a.history.map((h: { loss: number }) => h.loss)]);
  const random = path.join(root, 'run-random');
  const result = runNodeScript(FINETUNE_JS, [...common, '--output-dir', random, '--seed', '3', '--random-init']);
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stderr, /random initialisation/);
  assert.is.not(readResults(random).history[0].loss, a.history[0].loss);
});

test('CoNLL-2003-style BIO tags: entity-level F1 is reported', () => {
  // Tags from Sequoia: runs of PROPN as entities.
  const toNer = (conllu: string, file: string) => {
    const out: string[] = [];
    for (const block of fs.readFileSync(conllu, 'utf8').split('\n\n').filter((b) => b.trim())) {
      let previous = false;
      for (const line of block.split('\n').filter((l) => /^[0-9]+\t/.test(l))) {
        const [, form, , upos] = line.split('\t');
        const entity = upos === 'PROPN';
        out.push(`${form.replace(/\s/g, '_')} ${upos} ${entity ? `${previous ? 'I' : 'B'}-ENT` : 'O'}`);
        previous = entity;
      }
      out.push('');
    }
    fs.writeFileSync(file, `-DOCSTART- -X- O\n\n${out.join('\n')}\n`);
    return file;
  };
  const out = path.join(root, 'run-ner');
  const result = runNodeScript(FINETUNE_JS, ['--task', 'token-classification', '--model', encoder, '--train', toNer(train, path.join(root, 'train.ner')),
    '--dev', toNer(dev, path.join(root, 'dev.ner')), '--test', toNer(testFile, path.join(root, 'test.ner')), '--label-column', 'last',
    '--epochs', '1', '--batch-size', '8', '--threads', '1', '--quiet', '--output-dir', out]);
  assert.is(result.status, 0, result.stderr);
  const results = readResults(out);
  for (const split of ['dev', 'test']) {
    assert.type(results[split].entity.f1, 'number');
    assert.ok(results[split].entity.per_type.ENT.support > 0);
  }
  // predict.js fills the last column of a CoNLL-2003 file and keeps the rest, -DOCSTART- included.
  const predicted = path.join(root, 'predicted.ner');
  assert.is(runNodeScript(PREDICT_JS, ['--model', out, '--input', path.join(root, 'test.ner'), '--output', predicted, '--threads', '1']).status, 0);
  const tags = new Set(Object.values(JSON.parse(fs.readFileSync(path.join(out, 'model', 'config.json'), 'utf8')).id2label));
  const before = fs.readFileSync(path.join(root, 'test.ner'), 'utf8').trim().split('\n');
  const after = fs.readFileSync(predicted, 'utf8').trim().split('\n');
  assert.is(after.length, before.length);
  after.forEach((line, i) => {
    const [a, b] = [line.split(' '), before[i].split(' ')];
    assert.equal(a.slice(0, -1), b.slice(0, -1));
    if (a[0] !== '-DOCSTART-' && line !== '') assert.ok(tags.has(a[a.length - 1]), line);
  });
});

test('bad inputs end in one line naming the file (and line), exit 2, nothing written', () => {
  const expectFailure = (args: string[], pattern: RegExp) => {
    const out = path.join(root, `bad-${Math.random().toString(36).slice(2)}`);
    const result = runNodeScript(FINETUNE_JS, [...args, '--output-dir', out]);
    assert.is(result.status, 2, result.stderr);
    assert.match(result.stderr, pattern);
    assert.not.ok(result.stderr.includes('    at '), 'no stack trace');
    assert.not.ok(fs.existsSync(path.join(out, 'results.json')));
  };
  // The third word line of the file loses its last column.
  let wordLines = 0;
  const malformed = sequoiaSubset('train', 5, path.join(root, 'malformed.conllu'), (text) => text.split('\n')
    .map((l) => (/^[0-9]+\t/.test(l) && ++wordLines === 3 ? l.replace(/\t[^\t]*$/, '') : l)).join('\n'));
  const line = fs.readFileSync(malformed, 'utf8').split('\n').findIndex((l) => /^[0-9]+\t/.test(l) && l.split('\t').length === 9) + 1;
  expectFailure([...common.map((a) => (a === train ? malformed : a))], new RegExp(`malformed\\.conllu:${line}: expected 10 tab-separated fields, found 9`));
  const noTokenizer = path.join(root, 'no-tokenizer');
  fs.mkdirSync(noTokenizer);
  for (const name of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(encoder, name), path.join(noTokenizer, name));
  expectFailure(common.map((a) => (a === encoder ? noTokenizer : a)), /no-tokenizer: no tokenizer: expected a SentencePiece model \(spm\.model/);
  expectFailure([...common, '--label-column', 'NOPE'], /train\.conllu: no column "NOPE"/);
  const used = path.join(root, 'run-a');
  const again = runNodeScript(FINETUNE_JS, [...common, '--output-dir', used]);
  assert.is(again.status, 2);
  assert.match(again.stderr, /already holds a fine-tuning run \(results\.json\); choose another --output-dir or pass --overwrite/);
});

test.run();
