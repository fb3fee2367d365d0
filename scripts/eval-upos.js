#!/usr/bin/env node
'use strict';
// npm run eval:upos: does our pretraining help? On CPU, in one command:
//   1. pretrain configs/tiny.json (a 2-layer DeBERTa-V3, ELECTRA + GDES) on ../shared/data/fr-roman19
//      for --pretrain-steps steps (the CPU budget; its wall time is printed and returned);
//   2. fine-tune its discriminator for UPOS on UD French-Sequoia, for each --seeds seed;
//   3. fine-tune the same architecture from random initialisation, same budget and seeds;
//   4. print both test accuracies (mean and spread over the seeds);
//   5. (--parse, default on) a biaffine dependency parser on the pretrained model: UAS / LAS;
//   6. (when the .venv Python is there) transformers loads the first UPOS model and its
//      predictions on the whole test set are compared with ours, word by word.
// --json ends the output with {"pretrained_test_accuracy", "random_init_test_accuracy", "pretrain_steps", "pretrain_seconds", ...}.
// Rerunning with the same --output-dir reuses a finished pretraining (--fresh starts over).
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const usage = `usage: node scripts/eval-upos.js [--output-dir runs/eval-upos] [--pretrain-steps 300] [--epochs 3] [--seeds 1,2]
       [--data ../shared/data/fr-roman19] [--ud ../shared/data/ud-french-sequoia] [--threads N] [--no-parse] [--no-check] [--fresh] [--json]`;

function parseArgs(argv) {
  const options = {
    outputDir: path.join(root, 'runs', 'eval-upos'), pretrainSteps: 300, epochs: 3, seeds: [1, 2], parse: true, check: true, fresh: false, json: false,
    data: path.join(root, '..', 'shared', 'data', 'fr-roman19'), ud: path.join(root, '..', 'shared', 'data', 'ud-french-sequoia'), threads: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${flag} needs a value`);
      return argv[++i];
    };
    const integer = (text, min) => {
      if (!/^[0-9]+$/.test(text) || Number(text) < min) fail(`${flag} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
      return Number(text);
    };
    if (flag === '--output-dir') options.outputDir = path.resolve(value());
    else if (flag === '--pretrain-steps') options.pretrainSteps = integer(value(), 1);
    else if (flag === '--epochs') options.epochs = integer(value(), 1);
    else if (flag === '--seeds') options.seeds = value().split(',').map((s) => integer(s, 0));
    else if (flag === '--data') options.data = path.resolve(value());
    else if (flag === '--ud') options.ud = path.resolve(value());
    else if (flag === '--threads') options.threads = integer(value(), 0);
    else if (flag === '--no-parse') options.parse = false;
    else if (flag === '--no-check') options.check = false;
    else if (flag === '--fresh') options.fresh = true;
    else if (flag === '--json') options.json = true;
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    } else fail(`unknown option ${flag}\n${usage}`);
  }
  return options;
}

function fail(message) {
  process.stderr.write(`eval-upos: ${message}\n`);
  process.exit(2);
}

function say(line) {
  process.stderr.write(`eval-upos: ${line}\n`);
}

/** Runs a node script of dist/, its stderr streamed through; fails the whole run on a non-zero exit. */
function runNode(script, args) {
  say(`node ${path.relative(root, script)} ${args.join(' ')}`);
  const started = Date.now();
  const result = spawnSync(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) fail(`${path.basename(script)} failed (exit ${result.status}${result.signal ? `, ${result.signal}` : ''})`);
  return (Date.now() - started) / 1000;
}

function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const split = (name) => path.join(options.ud, `fr_sequoia-ud-${name}.conllu`);
  for (const file of [options.data, split('train'), split('dev'), split('test')]) if (!fs.existsSync(file)) fail(`${file} does not exist`);
  const threads = String(options.threads || require('os').cpus().length);
  const trainJs = path.join(root, 'dist', 'train.js');
  const finetuneJs = path.join(root, 'dist', 'finetune.js');
  const predictJs = path.join(root, 'dist', 'predict.js');
  for (const file of [trainJs, finetuneJs, predictJs]) if (!fs.existsSync(file)) fail(`${file} is missing: run npm run build`);

  // 1. Pretraining, or the finished one of an earlier run.
  const pretrainDir = path.join(options.outputDir, 'pretrain');
  const encoderDir = path.join(pretrainDir, 'export', 'discriminator');
  const timingFile = path.join(pretrainDir, 'eval-upos-pretrain.json');
  if (options.fresh) fs.rmSync(options.outputDir, { recursive: true, force: true });
  let pretrainSeconds;
  let reused = false;
  if (fs.existsSync(timingFile) && fs.existsSync(path.join(encoderDir, 'config.json'))) {
    const timing = JSON.parse(fs.readFileSync(timingFile, 'utf8'));
    if (timing.steps !== options.pretrainSteps) fail(`${pretrainDir} holds a ${timing.steps}-step pretraining; pass --fresh or --pretrain-steps ${timing.steps}`);
    pretrainSeconds = timing.seconds;
    reused = true;
    say(`reusing the ${timing.steps}-step pretraining in ${pretrainDir} (${timing.seconds.toFixed(0)} s when it ran)`);
  } else {
    fs.rmSync(pretrainDir, { recursive: true, force: true });
    fs.mkdirSync(options.outputDir, { recursive: true });
    pretrainSeconds = runNode(trainJs, ['--config', path.join(root, 'configs', 'tiny.json'), '--data', options.data, '--output-dir', pretrainDir,
      '--max-steps', String(options.pretrainSteps), '--save-every', '0', '--set', `threads=${threads}`, '--set', 'logging.progress=false']);
    fs.writeFileSync(timingFile, `${JSON.stringify({ steps: options.pretrainSteps, seconds: pretrainSeconds })}\n`);
  }

  // 2-3. The same fine-tuning budget for both initialisations.
  const finetuneArgs = (task, outDir, seed, extra = []) => ['--task', task, '--model', encoderDir, '--train', split('train'), '--dev', split('dev'), '--test', split('test'),
    '--output-dir', outDir, '--seed', String(seed), '--epochs', String(options.epochs), '--threads', threads, '--quiet', '--overwrite', ...extra];
  const runs = { pretrained: [], random: [] };
  let finetuneSeconds = 0;
  for (const seed of options.seeds) {
    for (const init of ['pretrained', 'random']) {
      const outDir = path.join(options.outputDir, `upos-${init}-seed${seed}`);
      // lr 1e-3: the rate a 64-wide model needs to move in 3 epochs (5e-5, the base-size default, barely does).
      finetuneSeconds += runNode(finetuneJs, finetuneArgs('token-classification', outDir, seed, ['--lr', '1e-3', ...(init === 'random' ? ['--random-init'] : [])]));
      const results = JSON.parse(fs.readFileSync(path.join(outDir, 'results.json'), 'utf8'));
      runs[init].push({ seed, dev: results.dev.accuracy, test: results.test.accuracy, dir: outDir });
    }
  }

  // 5. Dependency parsing on the pretrained encoder.
  let parsing = null;
  if (options.parse) {
    const outDir = path.join(options.outputDir, 'parse-pretrained');
    finetuneSeconds += runNode(finetuneJs, finetuneArgs('dependency-parsing', outDir, options.seeds[0], ['--lr', '1e-3', '--set', 'parser.arc_size=256', '--set', 'parser.rel_size=64']));
    const results = JSON.parse(fs.readFileSync(path.join(outDir, 'results.json'), 'utf8'));
    parsing = { uas: results.test.uas, las: results.test.las, dev_las: results.dev.las };
  }

  // 6. transformers' predictions on the whole test set against ours.
  let transformersCheck = null;
  const python = process.env.PYTHON || path.join(root, '.venv', 'bin', 'python3');
  if (options.check && fs.existsSync(python)) {
    const first = runs.pretrained[0].dir;
    const predicted = path.join(first, 'test.predicted.conllu');
    runNode(predictJs, ['--model', first, '--input', split('test'), '--output', predicted, '--threads', threads]);
    const result = spawnSync(python, [path.join(root, 'test', 'python', 'finetune_token_check.py'), path.join(first, 'model'), split('test'), predicted],
      { cwd: root, encoding: 'utf8', env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
    if (result.status !== 0) fail(`the transformers check failed:\n${result.stderr}`);
    const report = JSON.parse(result.stdout.trim().split('\n').pop());
    transformersCheck = { words: report.words, equal: report.equal, class: report.class };
    say(`transformers ${report.class} on the whole test set: ${report.equal} of ${report.words} word predictions equal ours`);
    if (report.equal !== report.words) fail(`transformers disagrees with us on ${report.words - report.equal} words: ${JSON.stringify(report.mismatches)}`);
  } else if (options.check) {
    say(`no Python at ${python}: the transformers check is skipped`);
  }

  const summary = (list) => ({ mean: mean(list.map((r) => r.test)), min: Math.min(...list.map((r) => r.test)), max: Math.max(...list.map((r) => r.test)) });
  const pre = summary(runs.pretrained);
  const rnd = summary(runs.random);
  const lines = [
    '',
    `UPOS accuracy on the UD French-Sequoia test set (words), tiny DeBERTa-V3 (2 layers x 64), ${options.epochs} fine-tuning epochs, seeds ${options.seeds.join(', ')}`,
    `  budget: pretraining ${options.pretrainSteps} steps of configs/tiny.json on ${path.basename(options.data)}, ${pretrainSeconds.toFixed(0)} s${reused ? ' (reused)' : ''}; fine-tuning ${finetuneSeconds.toFixed(0)} s in all; ${threads} thread(s)`,
    `  pretrained:   test accuracy ${pre.mean.toFixed(4)} (seeds: ${runs.pretrained.map((r) => r.test.toFixed(4)).join(', ')}; spread ${(pre.max - pre.min).toFixed(4)})`,
    `  random init:  test accuracy ${rnd.mean.toFixed(4)} (seeds: ${runs.random.map((r) => r.test.toFixed(4)).join(', ')}; spread ${(rnd.max - rnd.min).toFixed(4)})`,
    `  difference:   ${(pre.mean - rnd.mean >= 0 ? '+' : '')}${(pre.mean - rnd.mean).toFixed(4)}`,
    ...(parsing ? [`  parsing (pretrained, biaffine): test UAS ${parsing.uas.toFixed(4)}, LAS ${parsing.las.toFixed(4)}`] : []),
    `  total ${((Date.now() - started) / 1000).toFixed(0)} s`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (options.json) {
    process.stdout.write(`${JSON.stringify({
      pretrained_test_accuracy: pre.mean, random_init_test_accuracy: rnd.mean, pretrain_steps: options.pretrainSteps, pretrain_seconds: pretrainSeconds,
      pretrained_runs: runs.pretrained.map(({ seed, dev, test }) => ({ seed, dev, test })), random_init_runs: runs.random.map(({ seed, dev, test }) => ({ seed, dev, test })),
      finetune_seconds: finetuneSeconds, parsing, transformers_check: transformersCheck, total_seconds: (Date.now() - started) / 1000,
    })}\n`);
  }
}

main();
