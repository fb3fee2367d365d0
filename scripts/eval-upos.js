#!/usr/bin/env node
'use strict';
// npm run eval:upos: does our pretraining help? On CPU, in one command:
//   1. pretrain configs/tiny.json (a 2-layer DeBERTa-V3, ELECTRA + GDES) on ../shared/data/fr-roman19,
//      with a --vocab-size tokenizer trained on that text, for --pretrain-steps steps (the CPU budget;
//      its wall time is printed and returned);
//   2. fine-tune its discriminator for UPOS on UD French-Sequoia, for each --seeds seed;
//   3. fine-tune the same architecture from random initialisation, same recipe, budget and seeds;
//   4. print both test accuracies (mean and spread over the seeds) and a verdict;
//   5. (--parse, default on) a biaffine dependency parser on the pretrained model: UAS / LAS;
//   6. (when the .venv Python is there) transformers loads the first UPOS model and its
//      predictions on the whole test set are compared with ours, word by word.
// The fine-tunings run --jobs at a time, one thread each: a 64-wide model gains little from a
// second thread, and two processes use two cores fully.
// --json ends the output with {"pretrained_test_accuracy", "random_init_test_accuracy", "pretrain_steps", "pretrain_seconds", ...}.
// Rerunning with the same --output-dir reuses a finished pretraining (--fresh starts over).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..');
const distArgs = path.join(root, 'dist', 'cli', 'args.js');
if (!fs.existsSync(distArgs)) {
  process.stderr.write(`eval-upos.js: ${path.relative(process.cwd(), distArgs)} is missing: run "npm run build" first\n`);
  process.exit(2);
}
const { createCli, runCli, stringOption, listOption, integerOption, numberOption, flagOption, UsageError } = require(distArgs);

const cores = os.cpus().length;
const cli = createCli('eval-upos.js', 'Pretrain a tiny DeBERTa-V3 (ELECTRA + GDES) on French novels, then fine-tune it and the same architecture from random initialisation for UPOS tagging on UD French-Sequoia, and print both test accuracies.')
  .option('output-dir', stringOption('where the pretraining and every fine-tuning go', { default: path.join(root, 'runs', 'eval-upos'), defaultDescription: 'runs/eval-upos' }))
  .option('pretrain-steps', integerOption('--pretrain-steps', 'optimizer steps of the pretraining: the CPU budget (32 sequences of 128 tokens a step)', { min: 1 }, { default: 3000 }))
  .option('vocab-size', integerOption('--vocab-size', 'pieces of the SentencePiece tokenizer trained on --data (data.tokenizer_vocab_size)', { min: 16 }, { default: 4096 }))
  .option('epochs', integerOption('--epochs', 'UPOS fine-tuning epochs, for both initialisations', { min: 1 }, { default: 10 }))
  .option('lr', numberOption('--lr', 'UPOS fine-tuning peak learning rate, for both initialisations (a 64-wide model needs far more than the base-size 5e-5)', { min: 0 }, { default: 3e-3 }))
  .option('seeds', listOption('fine-tuning seeds (head initialisation, data order, dropout)', { default: ['1', '2'] }))
  .option('data', stringOption('pretraining text (train.js --data)', { default: path.join(root, '..', 'shared', 'data', 'fr-roman19'), defaultDescription: '../shared/data/fr-roman19' }))
  .option('ud', stringOption('directory with fr_sequoia-ud-{train,dev,test}.conllu', { default: path.join(root, '..', 'shared', 'data', 'ud-french-sequoia'), defaultDescription: '../shared/data/ud-french-sequoia' }))
  .option('threads', integerOption('--threads', 'intra-op threads of the pretraining', { min: 1 }, { default: cores, defaultDescription: 'one per core' }))
  .option('jobs', integerOption('--jobs', 'fine-tunings run at once, one thread each', { min: 1 }, { default: cores, defaultDescription: 'one per core' }))
  .option('parse', flagOption('also train a biaffine dependency parser on the pretrained model (UAS / LAS); --no-parse skips it', { default: true }))
  .option('parse-epochs', integerOption('--parse-epochs', 'dependency-parsing epochs', { min: 1 }, { default: 5 }))
  .option('check', flagOption('compare transformers\' predictions with ours on the whole test set (needs .venv or $PYTHON); --no-check skips it', { default: true }))
  .option('fresh', flagOption('delete --output-dir first instead of reusing its finished pretraining', { default: false }))
  .option('json', flagOption('end with one JSON line of the figures', { default: false }));

function say(line) {
  process.stderr.write(`eval-upos: ${line}\n`);
}

/**
 * Runs a node script of dist/. With `logFile`, its output goes there (and its tail into the error
 * when it fails); without, its stderr streams through. Resolves to its wall time in seconds.
 */
function runNode(script, args, logFile) {
  say(`node ${path.relative(root, script)} ${args.join(' ')}`);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const out = logFile ? fs.openSync(logFile, 'w') : 'inherit';
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', out, out] });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (logFile) fs.closeSync(out);
      if (code === 0) return resolve((Date.now() - started) / 1000);
      const tail = logFile ? `\n${fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-10).join('\n')}` : '';
      reject(new Error(`${path.basename(script)} ${args.slice(0, 2).join(' ')} failed (exit ${code}${signal ? `, ${signal}` : ''})${logFile ? `; its log: ${logFile}` : ''}${tail}`));
    });
  });
}

/** Runs the thunks `jobs` at a time; resolves to their results in order. */
async function pool(thunks, jobs) {
  const results = new Array(thunks.length);
  let next = 0;
  const worker = async () => {
    while (next < thunks.length) {
      const index = next++;
      results[index] = await thunks[index]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, thunks.length) }, worker));
  return results;
}

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

function parseSeeds(values) {
  return values.map(String).flatMap((v) => v.split(',')).map((text) => {
    if (!/^[0-9]+$/.test(text)) throw new UsageError(`--seeds: ${JSON.stringify(text)} is not an integer >= 0`);
    return Number(text);
  });
}

void runCli(cli, async (args) => {
  const started = Date.now();
  const outputDir = path.resolve(args['output-dir']);
  const seeds = parseSeeds(args.seeds);
  const steps = args['pretrain-steps'];
  const vocabSize = args['vocab-size'];
  const ud = path.resolve(args.ud);
  const split = (name) => path.join(ud, `fr_sequoia-ud-${name}.conllu`);
  for (const file of [path.resolve(args.data), split('train'), split('dev'), split('test')]) {
    if (!fs.existsSync(file)) throw new UsageError(`${file} does not exist`);
  }
  const trainJs = path.join(root, 'dist', 'train.js');
  const finetuneJs = path.join(root, 'dist', 'finetune.js');
  const predictJs = path.join(root, 'dist', 'predict.js');
  for (const file of [trainJs, finetuneJs, predictJs]) if (!fs.existsSync(file)) throw new UsageError(`${file} is missing: run npm run build`);

  // 1. Pretraining, or the finished one of an earlier run with the same budget.
  const pretrainDir = path.join(outputDir, 'pretrain');
  const encoderDir = path.join(pretrainDir, 'export', 'discriminator');
  const timingFile = path.join(pretrainDir, 'eval-upos-pretrain.json');
  if (args.fresh) fs.rmSync(outputDir, { recursive: true, force: true });
  let pretrainSeconds;
  let reused = false;
  if (fs.existsSync(timingFile) && fs.existsSync(path.join(encoderDir, 'config.json'))) {
    const timing = JSON.parse(fs.readFileSync(timingFile, 'utf8'));
    if (timing.steps !== steps || timing.vocab_size !== vocabSize) {
      throw new UsageError(`${pretrainDir} holds a ${timing.steps}-step pretraining with a ${timing.vocab_size}-piece tokenizer; `
        + `pass --fresh, or --pretrain-steps ${timing.steps} --vocab-size ${timing.vocab_size}`);
    }
    pretrainSeconds = timing.seconds;
    reused = true;
    say(`reusing the ${timing.steps}-step pretraining in ${pretrainDir} (${timing.seconds.toFixed(0)} s when it ran)`);
  } else {
    fs.rmSync(pretrainDir, { recursive: true, force: true });
    fs.mkdirSync(outputDir, { recursive: true });
    pretrainSeconds = await runNode(trainJs, ['--config', path.join(root, 'configs', 'tiny.json'), '--data', path.resolve(args.data), '--output-dir', pretrainDir,
      '--max-steps', String(steps), '--save-every', '0', '--set', `threads=${args.threads}`, '--set', `data.tokenizer_vocab_size=${vocabSize}`,
      '--set', 'logging.progress=false']);
    fs.writeFileSync(timingFile, `${JSON.stringify({ steps, vocab_size: vocabSize, seconds: pretrainSeconds })}\n`);
  }

  // 2-3, 5. The same fine-tuning recipe and budget for both initialisations; the parser beside them.
  const finetuneArgs = (task, outDir, seed, epochs, extra) => ['--task', task, '--model', encoderDir, '--train', split('train'), '--dev', split('dev'),
    '--test', split('test'), '--output-dir', outDir, '--seed', String(seed), '--epochs', String(epochs), '--lr', String(args.lr), '--threads', '1',
    '--quiet', '--overwrite', ...extra];
  const jobs = [];
  for (const seed of seeds) {
    for (const init of ['pretrained', 'random']) {
      const dir = path.join(outputDir, `upos-${init}-seed${seed}`);
      fs.mkdirSync(dir, { recursive: true });
      jobs.push({ kind: 'upos', init, seed, dir, args: finetuneArgs('token-classification', dir, seed, args.epochs, init === 'random' ? ['--random-init'] : []) });
    }
  }
  if (args.parse) {
    const dir = path.join(outputDir, 'parse-pretrained');
    fs.mkdirSync(dir, { recursive: true });
    jobs.push({ kind: 'parse', init: 'pretrained', seed: seeds[0], dir,
      args: finetuneArgs('dependency-parsing', dir, seeds[0], args['parse-epochs'], ['--set', 'parser.arc_size=256', '--set', 'parser.rel_size=64']) });
  }
  const finetuneStarted = Date.now();
  const done = await pool(jobs.map((job) => async () => {
    const seconds = await runNode(finetuneJs, job.args, path.join(job.dir, 'eval-upos.log'));
    const results = JSON.parse(fs.readFileSync(path.join(job.dir, 'results.json'), 'utf8'));
    const figure = job.kind === 'upos' ? `test accuracy ${results.test.accuracy.toFixed(4)}` : `test UAS ${results.test.uas.toFixed(4)}, LAS ${results.test.las.toFixed(4)}`;
    say(`${job.kind} ${job.init} seed ${job.seed}: ${figure} (${seconds.toFixed(0)} s)`);
    return { ...job, seconds, results };
  }), args.jobs);
  const finetuneSeconds = (Date.now() - finetuneStarted) / 1000;
  const runs = { pretrained: [], random: [] };
  for (const job of done.filter((j) => j.kind === 'upos')) {
    runs[job.init].push({ seed: job.seed, dev: job.results.dev.accuracy, test: job.results.test.accuracy, seconds: job.seconds, dir: job.dir });
  }
  const parseJob = done.find((j) => j.kind === 'parse');
  const parsing = parseJob ? { uas: parseJob.results.test.uas, las: parseJob.results.test.las, dev_las: parseJob.results.dev.las, epochs: args['parse-epochs'] } : null;

  // 6. transformers' predictions on the whole test set against ours.
  let transformersCheck = null;
  const python = process.env.PYTHON || path.join(root, '.venv', 'bin', 'python3');
  if (args.check && fs.existsSync(python)) {
    const first = runs.pretrained[0].dir;
    const predicted = path.join(first, 'test.predicted.conllu');
    await runNode(predictJs, ['--model', first, '--input', split('test'), '--output', predicted, '--threads', String(args.threads)]);
    const report = await new Promise((resolve, reject) => {
      const child = spawn(python, [path.join(root, 'test', 'python', 'finetune_token_check.py'), path.join(first, 'model'), split('test'), predicted],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => { stdout += chunk; });
      child.stderr.on('data', (chunk) => { stderr += chunk; });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout.trim().split('\n').pop())) : reject(new Error(`the transformers check failed:\n${stderr}`))));
    });
    transformersCheck = { words: report.words, equal: report.equal, class: report.class };
    say(`transformers ${report.class} on the whole test set: ${report.equal} of ${report.words} word predictions equal ours`);
    if (report.equal !== report.words) throw new Error(`transformers disagrees with us on ${report.words - report.equal} words: ${JSON.stringify(report.mismatches)}`);
  } else if (args.check) {
    say(`no Python at ${python}: the transformers check is skipped`);
  }

  const summary = (list) => {
    const tests = list.map((r) => r.test);
    return { mean: mean(tests), min: Math.min(...tests), max: Math.max(...tests) };
  };
  const pre = summary(runs.pretrained);
  const rnd = summary(runs.random);
  // "Clearly higher": the worst pretrained seed beats the best random-initialisation seed.
  const clearlyHigher = pre.min > rnd.max;
  const lines = [
    '',
    `UPOS accuracy on the UD French-Sequoia test set (words), tiny DeBERTa-V3 (2 layers x 64, ${vocabSize}-piece tokenizer), ${args.epochs} fine-tuning epochs at lr ${args.lr}, seeds ${seeds.join(', ')}`,
    `  budget: pretraining ${steps} steps of configs/tiny.json on ${path.basename(path.resolve(args.data))}, ${pretrainSeconds.toFixed(0)} s with ${args.threads} thread(s)${reused ? ' (reused)' : ''}; `
      + `fine-tuning ${finetuneSeconds.toFixed(0)} s wall, ${args.jobs} at a time`,
    `  pretrained:   test accuracy ${pre.mean.toFixed(4)} (seeds: ${runs.pretrained.map((r) => r.test.toFixed(4)).join(', ')}; spread ${(pre.max - pre.min).toFixed(4)})`,
    `  random init:  test accuracy ${rnd.mean.toFixed(4)} (seeds: ${runs.random.map((r) => r.test.toFixed(4)).join(', ')}; spread ${(rnd.max - rnd.min).toFixed(4)})`,
    `  difference:   ${(pre.mean - rnd.mean >= 0 ? '+' : '')}${(pre.mean - rnd.mean).toFixed(4)}: ${clearlyHigher ? 'pretrained is CLEARLY HIGHER (its worst seed beats random init\'s best)' : 'NOT clearly higher (the seeds overlap or random init wins)'}`,
    ...(parsing ? [`  parsing (pretrained, biaffine, ${parsing.epochs} epochs): test UAS ${parsing.uas.toFixed(4)}, LAS ${parsing.las.toFixed(4)}`] : []),
    `  total ${((Date.now() - started) / 1000).toFixed(0)} s`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (args.json) {
    process.stdout.write(`${JSON.stringify({
      pretrained_test_accuracy: pre.mean, random_init_test_accuracy: rnd.mean, pretrain_steps: steps, pretrain_seconds: pretrainSeconds,
      clearly_higher: clearlyHigher, vocab_size: vocabSize, epochs: args.epochs, lr: args.lr,
      pretrained_runs: runs.pretrained.map(({ seed, dev, test }) => ({ seed, dev, test })), random_init_runs: runs.random.map(({ seed, dev, test }) => ({ seed, dev, test })),
      finetune_seconds: finetuneSeconds, parsing, transformers_check: transformersCheck, total_seconds: (Date.now() - started) / 1000,
    })}\n`);
  }
});
