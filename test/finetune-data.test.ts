// Fine-tuning inputs and scores without a model: the CoNLL-U / CoNLL-2003 / JSONL / TSV readers and
// their errors, the attachment scorer on a hand-computed sentence (a multi-word token, punctuation,
// a relation subtype), entity spans, the tree decoder against brute force, and the config checks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { parseConllu, parseConll2003, wordArcs, wordLabels, columnIndex, formatCorpus, readCorpus, DataError } from '../src/finetune/conllu';
import { readTextExamples } from '../src/finetune/text-data';
import { attachmentScores, classificationScores, entitySpans, entityScores, isEntityTagSet } from '../src/finetune/metrics';
import { decodeTree } from '../src/finetune/biaffine';
import { loadFinetuneConfig, FinetuneConfigError } from '../src/finetune/config';
import { Random } from '../src/data/random';
import { trainingBatches } from '../src/finetune/trainer';
import { tempDir } from './helpers/train';

const dir = tempDir('finetune-data');
const row = (...fields: string[]) => fields.join('\t');

const GOLD = [
  '# text = Il parle du livre.',
  row('1', 'Il', 'il', 'PRON', '_', '_', '2', 'nsubj', '_', '_'),
  row('2', 'parle', 'parler', 'VERB', '_', '_', '0', 'root', '_', '_'),
  row('3-4', 'du', '_', '_', '_', '_', '_', '_', '_', '_'),
  row('3', 'de', 'de', 'ADP', '_', '_', '5', 'case', '_', '_'),
  row('4', 'le', 'le', 'DET', '_', '_', '5', 'det', '_', '_'),
  row('5', 'livre', 'livre', 'NOUN', '_', '_', '2', 'obl:arg', '_', 'SpaceAfter=No'),
  row('6', '.', '.', 'PUNCT', '_', '_', '2', 'punct', '_', '_'),
  '',
].join('\n');

test('CoNLL-U: syntactic words, not the multi-word token line, are the words', () => {
  const corpus = parseConllu('gold.conllu', GOLD);
  assert.equal(corpus.sentences[0].words.map((w) => w.form), ['Il', 'parle', 'de', 'le', 'livre', '.']);
  assert.equal(wordLabels(corpus, columnIndex(corpus, 'upos'))[0], ['PRON', 'VERB', 'ADP', 'DET', 'NOUN', 'PUNCT']);
  assert.equal(wordArcs(corpus)[0].heads, [2, 0, 5, 5, 2, 2]);
  // Written back with one column replaced, the rest (comment, range line, MISC) is as read.
  const out = formatCorpus(corpus, (_, w) => new Map([[3, `T${w}`]]));
  assert.is(out, GOLD.replace('PRON', 'T0').replace('VERB', 'T1').replace('ADP', 'T2').replace('DET', 'T3').replace('NOUN', 'T4').replace('PUNCT', 'T5') + '\n');
});

test('attachment scores of a hand-computed parse: punctuation counted, range line not, LAS on universal relations', () => {
  const predicted = GOLD
    .replace(row('3', 'de', 'de', 'ADP', '_', '_', '5', 'case'), row('3', 'de', 'de', 'ADP', '_', '_', '5', 'det')) // head right, relation wrong
    .replace(row('4', 'le', 'le', 'DET', '_', '_', '5', 'det'), row('4', 'le', 'le', 'DET', '_', '_', '2', 'det')) // head wrong
    .replace(row('5', 'livre', 'livre', 'NOUN', '_', '_', '2', 'obl:arg'), row('5', 'livre', 'livre', 'NOUN', '_', '_', '2', 'obl:mod')) // subtype differs
    .replace(row('6', '.', '.', 'PUNCT', '_', '_', '2', 'punct'), row('6', '.', '.', 'PUNCT', '_', '_', '5', 'punct')); // punctuation, head wrong
  const scores = attachmentScores(wordArcs(parseConllu('gold', GOLD)), wordArcs(parseConllu('predicted', predicted)));
  // Words: Il, parle, de, le, livre, . (6). Heads right: Il, parle, de, livre -> 4/6.
  // Universal relation too: Il, parle, livre (obl = obl) -> 3/6. Full relation: Il, parle -> 2/6.
  assert.equal(scores, { uas: 4 / 6, las: 3 / 6, las_full: 2 / 6, words: 6 });
});

test('CoNLL-U errors name the file and line', () => {
  const cases: [string, RegExp][] = [
    [GOLD.replace(row('2', 'parle', 'parler', 'VERB', '_', '_', '0', 'root', '_', '_'), row('2', 'parle', 'parler', 'VERB', '_', '_', '0', 'root', '_')), /bad\.conllu:3: expected 10 tab-separated fields, found 9/],
    [GOLD.replace(row('6', '.'), row('7', '.')), /bad\.conllu:8: word ID 7 out of sequence \(expected 6\)/],
    [GOLD.replace(row('2', 'parle', 'parler', 'VERB', '_', '_', '0'), row('2', 'parle', 'parler', 'VERB', '_', '_', '9')), /bad\.conllu:3: HEAD "9" is not 0 or a word of the sentence \(1\.\.6\)/],
    [GOLD.replace('1\tIl', 'x\tIl'), /bad\.conllu:2: ID "x" is not a word number/],
    [`${GOLD} \n${GOLD}`, /bad\.conllu:9: a blank line holding spaces/],
    [GOLD.replace('\tIl\t', '\t\t'), /bad\.conllu:2: column FORM is empty/],
  ];
  for (const [text, pattern] of cases) {
    const file = path.join(dir, 'bad.conllu');
    fs.writeFileSync(file, text);
    try {
      readCorpus(file);
      assert.unreachable(`no error for ${pattern}`);
    } catch (error) {
      assert.instance(error, DataError);
      assert.match((error as Error).message, pattern);
    }
  }
  try {
    wordLabels(parseConllu('gold', GOLD), 8 /* DEPS */);
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /gold:2: word "Il" has no value in column DEPS/);
  }
});

test('CoNLL-2003: columns by position or "last", -DOCSTART- kept in place, BIO entity F1', () => {
  const text = '-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n';
  const corpus = parseConll2003('ner.txt', text);
  assert.is(corpus.sentences.length, 2);
  const tags = wordLabels(corpus, columnIndex(corpus, 'last'));
  assert.equal(tags, [['B-ORG', 'O', 'B-MISC', 'O'], ['B-PER', 'I-PER']]);
  assert.ok(isEntityTagSet(tags.flat()));
  assert.is(formatCorpus(corpus, () => new Map()), `${text}\n`);
  try {
    parseConll2003('ner.txt', 'EU NNP B-NP B-ORG\nrejects VBZ O\n');
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /ner\.txt:2: expected 4 whitespace-separated columns/);
  }
});

test('entity spans follow conlleval (BIO and BIOES) and F1 counts exact spans', () => {
  assert.equal(entitySpans(['B-PER', 'I-PER', 'O', 'I-LOC', 'B-LOC', 'I-ORG']), ['PER 0 1', 'LOC 3 3', 'LOC 4 4', 'ORG 5 5']);
  assert.equal(entitySpans(['S-PER', 'B-ORG', 'I-ORG', 'E-ORG', 'E-ORG']), ['PER 0 0', 'ORG 1 3', 'ORG 4 4']);
  const scores = entityScores([['B-PER', 'I-PER', 'O', 'B-LOC']], [['B-PER', 'O', 'O', 'B-LOC']]);
  assert.is(scores.precision, 0.5);
  assert.is(scores.recall, 0.5);
  assert.is(scores.per_type.LOC.f1, 1);
  assert.not.ok(isEntityTagSet(['NOUN', 'VERB']));
});

test('classification scores: accuracy, per-label F1, macro-F1; an unseen gold label is an error', () => {
  const scores = classificationScores(['a', 'a', 'b', 'unseen'], ['a', 'b', 'b', 'a']);
  assert.is(scores.accuracy, 0.5);
  assert.equal(scores.per_label.a, { precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
  assert.equal(scores.per_label.b, { precision: 0.5, recall: 1, f1: 2 / 3, support: 1 });
  assert.is(scores.per_label.unseen.f1, 0);
  assert.ok(Math.abs(scores.macro_f1 - (0.5 + 2 / 3 + 0) / 3) < 1e-12);
});

test('JSONL and TSV: a missing label names the line; prediction input needs none', () => {
  const jsonl = path.join(dir, 'pairs.jsonl');
  fs.writeFileSync(jsonl, '{"text": "Il pleut.", "text_pair": "Le temps est sec.", "label": "contradiction"}\n\n{"text": "Il fait beau.", "label": 1}\n{"text": "Sans étiquette."}\n');
  try {
    readTextExamples(jsonl, { requireLabels: true });
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /pairs\.jsonl:4: no "label" field/);
  }
  const unlabelled = readTextExamples(jsonl, { requireLabels: false });
  assert.equal(unlabelled.map((e) => [e.textPair, e.label, e.line]), [['Le temps est sec.', 'contradiction', 1], [undefined, '1', 3], [undefined, undefined, 4]]);
  fs.writeFileSync(jsonl, '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"\n');
  assert.throws(() => readTextExamples(jsonl, { requireLabels: true }), /pairs\.jsonl:2: not a JSON line/);
  const tsv = path.join(dir, 'pairs.tsv');
  fs.writeFileSync(tsv, 'text\ttext_pair\tlabel\nIl pleut.\tIl fait sec.\t0\nUn\tDeux\n');
  assert.throws(() => readTextExamples(tsv, { requireLabels: true }), /pairs\.tsv:3: expected 3 tab-separated fields as in the header, found 2/);
});

/** Every head assignment of n words, kept when it is a tree with exactly one root child. */
function bruteForceBest(scores: number[][], n: number): number[] {
  let best: number[] = [];
  let bestScore = -Infinity;
  const heads = new Array(n).fill(0);
  const visit = (i: number) => {
    if (i === n) {
      if (heads.filter((h) => h === 0).length !== 1) return;
      for (let w = 1; w <= n; w++) {
        let v = w;
        for (let k = 0; k <= n && v !== 0; k++) v = heads[v - 1];
        if (v !== 0) return;
      }
      const total = heads.reduce((sum, h, w) => sum + scores[w][h], 0);
      if (total > bestScore) { bestScore = total; best = [...heads]; }
      return;
    }
    for (let h = 0; h <= n; h++) if (h !== i + 1) { heads[i] = h; visit(i + 1); }
  };
  visit(0);
  return best;
}

test('the tree decoder finds the best single-root tree (Chu-Liu/Edmonds vs brute force)', () => {
  const random = new Random(7);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + (trial % 5);
    const scores = Array.from({ length: n }, () => Array.from({ length: n + 1 }, () => Math.log(random.random() + 1e-9) * 3));
    // Cycles and several root candidates must happen: make the greedy choice often a cycle.
    if (trial % 3 === 0 && n >= 2) { scores[0][2] = 5; scores[1][1] = 5; }
    const decoded = decodeTree(scores, n);
    const expected = bruteForceBest(scores, n);
    const total = (heads: number[]) => heads.reduce((sum, h, w) => sum + scores[w][h], 0);
    assert.ok(Math.abs(total(decoded) - total(expected)) < 1e-9, `trial ${trial}: ${decoded} (${total(decoded)}) vs ${expected} (${total(expected)})`);
    assert.is(decoded.filter((h) => h === 0).length, 1);
  }
});

test('config: unknown keys and bad values are reported together with the file', () => {
  const file = path.join(dir, 'finetune.json');
  fs.writeFileSync(file, JSON.stringify({ task: 'token-classification', model: 'm', train: 't', dev: 'd', output_dir: 'o', epoch: 3, lr: -1 }));
  try {
    loadFinetuneConfig(file, {});
    assert.unreachable();
  } catch (error) {
    assert.instance(error, FinetuneConfigError);
    const problems = (error as FinetuneConfigError).problems.join('\n');
    assert.match(problems, /finetune\.json: \(config\): unknown key epoch/);
    assert.match(problems, /finetune\.json: lr: /);
  }
  fs.writeFileSync(file, JSON.stringify({ task: 'token-classification', model: 'm', train: 't', dev: 'd', output_dir: 'o', epochs: 5 }));
  const config = loadFinetuneConfig(file, { lr: 1e-3 }, ['epochs=2', 'parser.arc_size=64']);
  assert.equal([config.lr, config.epochs, config.parser.arc_size, config.label_column, config.test], [1e-3, 2, 64, 'UPOS', null]);
});

test('training batches: every example once per epoch, similar lengths together, the same for the same seed', () => {
  const random = new Random(3);
  const examples = Array.from({ length: 1000 }, (_, i) => ({ id: i, length: 5 + Math.floor(random.random() * 100) }));
  const batches = trainingBatches(examples, 16, new Random(9, 1));
  assert.equal(batches.flat().map((e) => e.id).sort((a, b) => a - b), examples.map((e) => e.id));
  const padded = batches.reduce((n, b) => n + b.length * Math.max(...b.map((e) => e.length)), 0);
  const real = examples.reduce((n, e) => n + e.length, 0);
  assert.ok(padded < 1.1 * real, `padded ${padded} vs real ${real}`);
  assert.equal(trainingBatches(examples, 16, new Random(9, 1)), batches);
  assert.not.equal(trainingBatches(examples, 16, new Random(9, 2)), batches);
});

test.run();
