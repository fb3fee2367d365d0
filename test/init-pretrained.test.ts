// Continued pretraining from HF directories made by transformers (test/python/init_models.py):
// the round trip (init, 0 steps, export) loses nothing in transformers; a discriminator alone gets
// a fresh generator and RTD head and trains; every kind of mismatch is an exit-2 error naming the
// key or file, with nothing written.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir, writeConfig, runTrain, DEMO_TEXT } from './helpers/train';
import { runPython, pythonScript, repoRoot } from './helpers/python';
import { parseTrainConfig, TrainConfigError } from '../src/pretrain/config';
import { checkData } from '../src/pretrain/data';
import { initialiseFromPretrained, InitReport, INIT_REPORT_FILE } from '../src/pretrain/init';
import { exportRun } from '../src/pretrain/export';
import { ElectraModel } from '../src/pretrain/electra';
import { loadTokenizer } from '../src/tokenizer/index';
import { trainTokenizer } from '../src/tokenizer/train';
import { liveTensorCount, noGrad, tidy } from '../src/tensor';

const root = tempDir('init-pretrained');
const tok = path.join(root, 'tok');
const otherTok = path.join(root, 'tok-other');
const dirs = {
  disc: path.join(root, 'disc'), gen: path.join(root, 'gen'), v3: path.join(root, 'v3-mlm'), roberta: path.join(root, 'roberta'), otherGen: path.join(root, 'gen-other'),
};
// The smallest novel of fr-roman19 (236 KB).
const romanFile = path.join(repoRoot, '..', 'shared', 'data', 'fr-roman19', 'Aurevilly_HistoireSansNom-rd0006.txt');

/** Models by `KIND:OUT_DIR:FORMAT:SEED`, all in one Python process. */
const make = (...specs: string[]) => runPython([pythonScript('init_models.py'), 'make', ...specs, '--tokenizer', tok]);

function baseConfig(output: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    objective: 'electra',
    data: { seq_length: 32, held_out_fraction: 0.1, shuffle_buffer: 50 },
    batch: { global_batch_size: 8, micro_batch_size: 4 },
    optimizer: { name: 'adamw', lr: 0.002 },
    max_steps: 4,
    threads: 1,
    logging: { every: 1, progress: false },
    checkpoint: { every: 0 },
    output_dir: output,
    ...overrides,
  };
}

test.before(async () => {
  await trainTokenizer({ inputs: [DEMO_TEXT], vocabSize: 300, outputDir: tok, seed: 1 });
  // The same size and special tokens, other pieces: only the pieces tell them apart.
  await trainTokenizer({ inputs: [romanFile], vocabSize: 300, outputDir: otherTok, seed: 1 });
  // The generator as pytorch_model.bin, the v3-like model sharded: every weight format is read.
  make(`discriminator:${dirs.disc}:safetensors:0`, `generator:${dirs.gen}:bin:1`, `v3-mlm:${dirs.v3}:sharded:2`,
    `roberta:${dirs.roberta}:safetensors:3`, `v3-mlm:${dirs.otherGen}:safetensors:4`);
});

test('round trip: init from a discriminator + generator, 0 steps, export: transformers gives the same outputs to 1e-6', async () => {
  const live = liveTensorCount();
  const out = path.join(root, 'roundtrip');
  const config = parseTrainConfig({ ...baseConfig(out), init: { discriminator: dirs.disc, generator: dirs.gen } }, 'roundtrip.json');
  const result = await initialiseFromPretrained(config, checkData(DEMO_TEXT, 'data.path', 'roundtrip.json'), 'roundtrip.json', { loadWeights: true });
  const model = result.model as ElectraModel;
  const report = result.report!;
  assert.equal(report.counts, { loaded: report.entries.length, fresh: 0, ignored: 0, resized: 0 });
  assert.is(report.tokenizer.relation, 'same');
  assert.ok(report.notes[0].includes('model.preset'), report.notes[0]);
  // Under GDES the generator's table is the shared one and the delta makes up the discriminator's.
  assert.ok(tidy(() => noGrad(() => model.embedding_delta!.abs().max().item())) > 0.01);
  const tokenizer = await loadTokenizer(result.tokenizerPath);
  exportRun(model, result.configs, tokenizer, path.join(out, 'export'));
  model.dispose();
  assert.is(liveTensorCount(), live, 'init leaves no tensor behind');

  const disc = JSON.parse(runPython([pythonScript('init_models.py'), 'compare', dirs.disc, path.join(out, 'export', 'discriminator'), '--class', 'AutoModel', '--rtd']).stdout);
  const gen = JSON.parse(runPython([pythonScript('init_models.py'), 'compare', dirs.gen, path.join(out, 'export', 'generator'), '--class', 'AutoModelForMaskedLM']).stdout);
  console.log(`  round trip: discriminator hidden ${disc.max_abs.toExponential(2)} (of ${disc.reference_max.toFixed(2)}), RTD ${disc.rtd_max_abs.toExponential(2)}, generator logits ${gen.max_abs.toExponential(2)} (of ${gen.reference_max.toFixed(2)})`);
  for (const r of [disc, gen]) {
    assert.equal([r.missing, r.unexpected, r.only_reference, r.only_exported], [[], [], [], []], JSON.stringify(r));
    assert.ok(r.max_abs <= 1e-6, `max abs ${r.max_abs}`);
  }
  assert.ok(disc.rtd_max_abs <= 1e-6, `RTD ${disc.rtd_max_abs}`);
  assert.is(disc.class, 'DebertaV2Model');
  assert.is(gen.class, 'DebertaV2ForMaskedLM');
});

test('a discriminator alone (a deberta-v3-like ForMaskedLM, sharded): fresh generator and RTD head, heads ignored, and it trains', () => {
  const out = path.join(root, 'alone');
  const file = writeConfig(root, baseConfig(out, { max_steps: 20, model: { generator: { hidden_ratio: 1, layer_ratio: 0.5 } } }), 'alone.json');
  const run = runTrain(['--config', file, '--data', romanFile, '--init-discriminator', dirs.v3]);
  assert.is(run.status, 0, run.stderr);
  const report = JSON.parse(fs.readFileSync(path.join(out, INIT_REPORT_FILE), 'utf8')) as InitReport;
  const of = (part: string, status: string) => report.entries.filter((e) => e.part === part && e.status === status);
  assert.is(of('rtd_head', 'fresh').length, 4);
  assert.ok(of('generator', 'fresh').length > 10);
  assert.equal(of('generator', 'loaded').map((e) => e.key), ['deberta.embeddings.word_embeddings.weight']);
  assert.ok(of('discriminator', 'ignored').some((e) => e.key.startsWith('lm_predictions.')), 'the masked-LM head is ignored');
  assert.is(of('discriminator', 'fresh').length, 0);
  assert.ok(report.notes.some((n) => n.includes('no init.generator')), report.notes.join('\n'));
  assert.ok(run.stderr.includes('init:   fresh   rtd_head/discriminator_predictions.dense.weight'), 'the table is printed');
  // Microsoft's ratios: the generator as wide as the discriminator, half as deep.
  assert.ok(report.generator.dir === null);
  const lines = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'gen_loss' in l);
  assert.is(lines.length, 20);
  for (const l of lines) assert.ok(Number.isFinite(l.gen_loss) && Number.isFinite(l.disc_loss), JSON.stringify(l));
  const mean = (ls: { gen_loss: number; disc_loss: number }[], k: 'gen_loss' | 'disc_loss') => ls.reduce((s, l) => s + l[k], 0) / ls.length;
  console.log(`  alone, 20 steps: gen_loss ${mean(lines.slice(0, 5), 'gen_loss').toFixed(3)} -> ${mean(lines.slice(-5), 'gen_loss').toFixed(3)}, disc_loss ${mean(lines.slice(0, 5), 'disc_loss').toFixed(3)} -> ${mean(lines.slice(-5), 'disc_loss').toFixed(3)}`);
  const exported = JSON.parse(fs.readFileSync(path.join(out, 'export', 'discriminator', 'config.json'), 'utf8'));
  assert.is(exported.hidden_size, 32);
  assert.is(exported.legacy, false);
});

function expectError(name: string, overrides: Record<string, unknown>, args: string[], pattern: RegExp): void {
  const out = path.join(root, `bad-${name}`);
  const file = writeConfig(root, baseConfig(out, overrides), `bad-${name}.json`);
  const run = runTrain(['--config', file, '--data', DEMO_TEXT, ...args]);
  assert.is(run.status, 2, `${name}: exit ${run.status}\n${run.stderr}`);
  assert.match(run.stderr, pattern, run.stderr);
  assert.not.ok(fs.existsSync(out), `${name}: ${out} was created`);
}

function copyDir(from: string, to: string, without: string[] = []): string {
  fs.mkdirSync(to, { recursive: true });
  for (const name of fs.readdirSync(from)) if (!without.includes(name)) fs.copyFileSync(path.join(from, name), path.join(to, name));
  return to;
}

test('mismatches are exit-2 errors naming the key or file, and nothing is written', () => {
  expectError('roberta', {}, ['--init-discriminator', dirs.roberta], /init\.discriminator: .*roberta.*config\.json: model_type "roberta".*deberta-v2 model is needed/);
  expectError('roberta-as-generator', {}, ['--init-discriminator', dirs.disc, '--init-generator', dirs.roberta], /init\.generator: .*model_type "roberta"/);

  const shaped = copyDir(dirs.disc, path.join(root, 'disc-shape'));
  const json = JSON.parse(fs.readFileSync(path.join(shaped, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(shaped, 'config.json'), JSON.stringify({ ...json, intermediate_size: 80 }));
  expectError('shape', {}, ['--init-discriminator', shaped], /init\.discriminator: .*model\.safetensors: encoder\.layer\.0\.intermediate\.dense\.weight: shape \[96, 48\] there, \[80, 48\] in the model/);

  const empty = copyDir(dirs.disc, path.join(root, 'disc-no-weights'), ['model.safetensors']);
  expectError('no-weights', {}, ['--init-discriminator', empty], /init\.discriminator: .*disc-no-weights: no weights \(looked for model\.safetensors/);
  expectError('no-dir', {}, ['--init-discriminator', path.join(root, 'nowhere')], /init\.discriminator: .*nowhere: no such directory/);

  expectError('tokenizer', { data: { seq_length: 32, tokenizer: path.join(otherTok, 'spm.model') } }, ['--init-discriminator', dirs.disc],
    /data\.tokenizer: the data's tokenizer does not match the model's: id \d+ is "[^"]*" in the model's .*disc\/spm\.model but "[^"]*" in .*tok-other\/spm\.model/);

  expectError('gdes-width', {}, ['--init-discriminator', dirs.disc, '--init-generator', dirs.otherGen], /init\.generator: embedding_size 32 differs from the discriminator's 48/);
  expectError('with-init-from', { init_from: dirs.disc }, ['--init-discriminator', dirs.disc], /init\.discriminator: init_from already gives the weights/);
});

test('init.allow_resize copies the overlapping block of a mismatched tensor and reports it', async () => {
  const config = parseTrainConfig({ ...baseConfig(path.join(root, 'resize')), init: { discriminator: path.join(root, 'disc-shape'), allow_resize: true } }, 'resize.json');
  const result = await initialiseFromPretrained(config, checkData(DEMO_TEXT, 'data.path', 'resize.json'), 'resize.json', { loadWeights: true });
  const resized = result.report!.entries.filter((e) => e.status === 'resized');
  assert.ok(resized.some((e) => e.key === 'encoder.layer.0.intermediate.dense.weight' && e.sourceShape![0] === 96 && e.shape[0] === 80), JSON.stringify(resized));
  result.model!.dispose();
  // Without it, the API throws the same error the CLI prints.
  const strict = parseTrainConfig({ ...baseConfig(path.join(root, 'resize')), init: { discriminator: path.join(root, 'disc-shape') } }, 'resize.json');
  try {
    await initialiseFromPretrained(strict, checkData(DEMO_TEXT, 'data.path', 'resize.json'), 'resize.json', { loadWeights: true });
    assert.unreachable('no error');
  } catch (error) {
    assert.instance(error, TrainConfigError);
    assert.ok((error as TrainConfigError).problems.every((p) => p.key === 'init.discriminator'));
  }
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
