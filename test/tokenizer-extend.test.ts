// tokenizer.js extend: new word pieces after every old id; old ids keep their pieces, text without
// the new words keeps its ids, the new words are one piece each in our encoder, in Python
// sentencepiece and in AutoTokenizer. Continued pretraining with the extended tokenizer grows the
// rows of both models (and the MLM bias) to a multiple of 8, each new row the mean of its old
// pieces' rows, the old rows untouched (the export computes what the original did on old ids).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { tempDir, DEMO_TEXT } from './helpers/train';
import { runPython, pythonScript, repoRoot } from './helpers/python';
import { trainTokenizer } from '../src/tokenizer/train';
import { loadTokenizer, readSentencePieceModel } from '../src/tokenizer/index';
import { EXTENSION_FILE, ExtendResult } from '../src/tokenizer/extend';
import { parseTrainConfig } from '../src/pretrain/config';
import { checkData } from '../src/pretrain/data';
import { initialiseFromPretrained } from '../src/pretrain/init';
import { exportRun } from '../src/pretrain/export';
import { ElectraModel } from '../src/pretrain/electra';
import { Tensor, tidy, noGrad } from '../src/tensor';

const root = tempDir('tokenizer-extend');
const tok = path.join(root, 'tok');
const extended = path.join(root, 'tok-ext');
const TOKENIZER_JS = path.join(repoRoot, 'dist', 'tokenizer.js');
const WORDS = ['bibliothèque', 'château', 'maison', 'extraordinairement'];

const tokenizerJs = (args: string[]) => spawnSync(process.execPath, [TOKENIZER_JS, ...args], { encoding: 'utf8', cwd: repoRoot, timeout: 120_000 });

test.before(async () => {
  await trainTokenizer({ inputs: [DEMO_TEXT], vocabSize: 300, outputDir: tok, seed: 1 });
  fs.writeFileSync(path.join(root, 'words.txt'), `# words to add\n${WORDS.join('\n')}\n\nmaison\n`);
});

test('extend --add: old ids keep their pieces, [MASK] keeps its id, the new words come after', async () => {
  const run = tokenizerJs(['extend', '--model', tok, '--add', path.join(root, 'words.txt'), '--output', extended]);
  assert.is(run.status, 0, run.stderr);
  const before = readSentencePieceModel(path.join(tok, 'spm.model'));
  const after = readSentencePieceModel(path.join(extended, 'spm.model'));
  for (let id = 0; id < before.pieces.length; id++) assert.equal(after.pieces[id], before.pieces[id], `id ${id}`);
  const oldTokenizer = await loadTokenizer(path.join(tok, 'spm.model'));
  const newTokenizer = await loadTokenizer(path.join(extended, 'spm.model'));
  assert.equal(newTokenizer.special.ids, oldTokenizer.special.ids);
  assert.is(oldTokenizer.special.ids.mask, 300);
  assert.equal(after.pieces[300], { piece: '[MASK]', score: 0, type: 3 });
  assert.is(newTokenizer.vocabSize, 305);
  const report = JSON.parse(fs.readFileSync(path.join(extended, EXTENSION_FILE), 'utf8')) as ExtendResult;
  assert.equal(report.added.map((a) => [a.word, a.id]), WORDS.map((w, i) => [w, 301 + i]));
  assert.equal(report.skipped, [{ word: 'maison', reason: 'given twice' }]);

  // Our encoder: each new word is its piece; lines without the new words keep every id.
  for (const [i, word] of WORDS.entries()) assert.equal(Array.from(newTokenizer.sp.encode(word)), [301 + i], word);
  const novel = path.join(repoRoot, '..', 'shared', 'data', 'fr-roman19', 'Aurevilly_HistoireSansNom-rd0006.txt');
  const text = fs.readFileSync(DEMO_TEXT, 'utf8') + (fs.existsSync(novel) ? fs.readFileSync(novel, 'utf8') : '');
  const lines = text.split('\n').filter((line) => line.trim() && !WORDS.some((w) => line.includes(w)));
  assert.ok(lines.length > 20, `${lines.length} lines`);
  let changed = 0;
  for (const line of lines) if (Array.from(newTokenizer.sp.encode(line)).join() !== Array.from(oldTokenizer.sp.encode(line)).join()) changed++;
  assert.is(changed, 0, `${changed} of ${lines.length} lines without the new words changed`);
  const withWords = text.split('\n').filter((line) => WORDS.some((w) => line.includes(w)));
  console.log(`  ${lines.length} lines without the new words (demo text + a novel of fr-roman19): 0 changed; ${withWords.length} lines with them`);
});

test('Python sentencepiece and AutoTokenizer load it: the same ids, the new words one piece each', () => {
  const texts = ['Le soleil se levait sur la petite ville, et les rues étaient encore vides.', 'La maison du château, près de la bibliothèque.', ...WORDS];
  const args = [pythonScript('init_models.py'), 'tokenizer'];
  const before = JSON.parse(runPython([...args, tok, ...texts.flatMap((t) => ['--text', t])]).stdout);
  const after = JSON.parse(runPython([...args, extended, ...texts.flatMap((t) => ['--text', t])]).stdout);
  assert.is(after.class, 'DebertaV2Tokenizer');
  assert.is(after.len, 305);
  assert.is(after.pieces, 305);
  for (const entry of after.texts) assert.equal(entry.auto, entry.sentencepiece, entry.text);
  assert.equal(after.texts[0].auto, before.texts[0].auto, 'text without the new words');
  assert.ok(after.texts[1].auto.includes(301) && after.texts[1].auto.includes(302) && after.texts[1].auto.includes(303));
  for (const [i] of WORDS.entries()) assert.equal(after.texts[2 + i].auto, [301 + i], WORDS[i]);
});

test('extend --from-corpus picks the words that save the most tokens', async () => {
  const out = path.join(root, 'tok-corpus');
  const run = tokenizerJs(['extend', '--model', tok, '--from-corpus', DEMO_TEXT, '--count', '6', '--output', out]);
  assert.is(run.status, 0, run.stderr);
  const report = JSON.parse(fs.readFileSync(path.join(out, EXTENSION_FILE), 'utf8')) as ExtendResult;
  assert.is(report.added.length, 6);
  const saved = report.added.map((a) => a.count! * (a.oldIds.length - 1));
  assert.equal(saved, [...saved].sort((a, b) => b - a));
  assert.ok(report.added.every((a) => a.oldIds.length >= 2 && a.count! >= 2));
  const sp = (await loadTokenizer(path.join(out, 'spm.model'))).sp;
  for (const a of report.added) assert.equal(Array.from(sp.encode(a.word)), [a.id]);
});

test('bad input: exit 2 naming the file and line, nothing written', () => {
  fs.writeFileSync(path.join(root, 'bad.txt'), 'maison\ndeux mots\n');
  const out = path.join(root, 'tok-bad');
  let run = tokenizerJs(['extend', '--model', tok, '--add', path.join(root, 'bad.txt'), '--output', out]);
  assert.is(run.status, 2, run.stderr);
  assert.match(run.stderr, /bad\.txt:2: "deux mots" holds whitespace/);
  run = tokenizerJs(['extend', '--model', path.join(root, 'nowhere'), '--add', path.join(root, 'words.txt'), '--output', out]);
  assert.is(run.status, 2, run.stderr);
  assert.match(run.stderr, /nowhere: no such file or directory/);
  run = tokenizerJs(['extend', '--model', tok, '--output', out]);
  assert.is(run.status, 2, run.stderr);
  assert.not.ok(fs.existsSync(out));
});

test('continued pretraining with the extended tokenizer: rows grow to a multiple of 8, new rows are means of old pieces, the export loads', async () => {
  const dirs = { disc: path.join(root, 'disc'), gen: path.join(root, 'gen') };
  runPython([pythonScript('init_models.py'), 'make', `discriminator:${dirs.disc}:safetensors:0`, `generator:${dirs.gen}:safetensors:1`, '--tokenizer', tok]);
  const out = path.join(root, 'run');
  const config = parseTrainConfig({
    objective: 'electra', data: { seq_length: 32, tokenizer: path.join(extended, 'spm.model') }, init: { discriminator: dirs.disc, generator: dirs.gen }, output_dir: out,
  }, 'ext.json');
  const result = await initialiseFromPretrained(config, checkData(DEMO_TEXT, 'data.path', 'ext.json'), 'ext.json', { loadWeights: true });
  const model = result.model as ElectraModel;
  const report = result.report!;
  assert.equal(report.tokenizer.rows, { before: 304, after: 312 });
  assert.is(report.tokenizer.relation, 'extended');
  assert.equal(report.entries.filter((e) => e.status === 'resized').map((e) => e.key).sort(),
    ['cls.predictions.bias', 'deberta.embeddings.word_embeddings.weight', 'embeddings.word_embeddings.weight']);
  assert.is(result.configs.main.vocab_size, 312);
  assert.is(result.configs.generator!.vocab_size, 312);

  const extension = JSON.parse(fs.readFileSync(path.join(extended, EXTENSION_FILE), 'utf8')) as ExtendResult;
  const original = JSON.parse(runPython(['-c', [
    'import json, sys', 'from safetensors.torch import load_file',
    `d = load_file(${JSON.stringify(path.join(dirs.disc, 'model.safetensors'))})`, `g = load_file(${JSON.stringify(path.join(dirs.gen, 'model.safetensors'))})`,
    `ids = ${JSON.stringify(extension.added.map((a) => a.oldIds))}`,
    'print(json.dumps({"disc": [d["embeddings.word_embeddings.weight"][i].mean(0).tolist() for i in ids], "gen": [g["deberta.embeddings.word_embeddings.weight"][i].mean(0).tolist() for i in ids], "bias": [g["cls.predictions.bias"][i].mean().item() for i in ids], "disc_old": d["embeddings.word_embeddings.weight"][:301].sum().item()}))',
  ].join('\n')]).stdout);
  tidy(() => noGrad(() => {
    const discTable = model.discriminatorEmbeddingTable();
    const rows = (t: Tensor, id: number) => Array.from(t.select(0, id).toTypedArray() as Float32Array);
    for (const [i, a] of extension.added.entries()) {
      const close = (x: number[], y: number[], what: string) => x.forEach((v, k) => assert.ok(Math.abs(v - y[k]) < 1e-6, `${what} ${a.word}[${k}]: ${v} vs ${y[k]}`));
      close(rows(discTable, a.id), original.disc[i], 'discriminator');
      close(rows(model.generatorEmbeddings, a.id), original.gen[i], 'generator');
      const bias = model.generator.cls!.predictions.bias.select(0, a.id).item();
      assert.ok(Math.abs(bias - original.bias[i]) < 1e-6, `bias ${bias} vs ${original.bias[i]}`);
    }
    const oldSum = discTable.narrow(0, 0, 301).sum().item();
    assert.ok(Math.abs(oldSum - original.disc_old) < 1e-3, `old rows ${oldSum} vs ${original.disc_old}`);
    assert.is(discTable.shape[0], 312);
  }));
  const tokenizer = await loadTokenizer(result.tokenizerPath);
  exportRun(model, result.configs, tokenizer, path.join(out, 'export'));
  model.dispose();

  // On old ids the export computes what the original did; its tokenizer round-trips.
  const disc = JSON.parse(runPython([pythonScript('init_models.py'), 'compare', dirs.disc, path.join(out, 'export', 'discriminator'), '--rtd', '--max-id', '301']).stdout);
  assert.equal(disc.vocab_size, [304, 312]);
  assert.equal([disc.missing, disc.unexpected], [[], []]);
  assert.ok(disc.max_abs <= 1e-6, `discriminator ${disc.max_abs}`);
  const gen = JSON.parse(runPython([pythonScript('init_models.py'), 'compare', dirs.gen, path.join(out, 'export', 'generator'), '--class', 'AutoModelForMaskedLM', '--max-id', '301']).stdout);
  assert.equal(gen.vocab_size, [304, 312]);
  assert.ok(gen.max_abs <= 1e-6, `generator ${gen.max_abs}`);
  const text = 'La maison du château, près de la bibliothèque.';
  const roundTrip = JSON.parse(runPython(['-c', [
    'import json', 'from transformers import AutoTokenizer',
    `t = AutoTokenizer.from_pretrained(${JSON.stringify(path.join(out, 'export', 'discriminator'))})`,
    `ids = t(${JSON.stringify(text)})["input_ids"]`,
    'print(json.dumps({"ids": ids, "text": t.decode(ids, skip_special_tokens=True), "len": len(t)}))',
  ].join('\n')]).stdout);
  assert.is(roundTrip.text, text);
  assert.is(roundTrip.len, 305);
  assert.ok([301, 302, 303].every((id) => roundTrip.ids.includes(id)), JSON.stringify(roundTrip.ids));
  console.log(`  extended export: discriminator on old ids ${disc.max_abs.toExponential(2)}, generator ${gen.max_abs.toExponential(2)}; new rows = means of old pieces' rows`);
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
