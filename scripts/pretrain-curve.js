#!/usr/bin/env node
'use strict';
// Does pretraining learn? Runs dist/train.js for a few hundred steps (its progress streams to
// stderr), then prints the logged curve from OUTPUT_DIR/log.jsonl and a two-line verdict:
// did the generator (or MLM) loss fall from the first logged window to the last, and does the
// discriminator find replaced tokens better than chance.
//   node scripts/pretrain-curve.js [--config configs/tiny.json] [--data ../shared/data/fr-roman19]
//        [--steps 300] [--output-dir runs/curve] [--threads N] [--set key.path=value ...] [--resume]
//   node scripts/pretrain-curve.js --log-only --output-dir runs/curve
// Needs `npm run build` (dist/); `npm run curve -- FLAGS` builds first.
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..');
const distArgs = path.join(root, 'dist', 'cli', 'args.js');
if (!fs.existsSync(distArgs)) {
  process.stderr.write(`pretrain-curve.js: ${path.relative(process.cwd(), distArgs)} is missing: run "npm run build" first\n`);
  process.exit(2);
}
const { createCli, runCli, stringOption, listOption, integerOption, flagOption, UsageError } = require(distArgs);
const { readMetricsLog } = require(path.join(root, 'dist', 'pretrain', 'metrics-log.js'));

const cli = createCli('pretrain-curve.js', 'Run a short pretraining with dist/train.js and print its learning curve (log.jsonl) with a verdict: did the generator loss fall, does the discriminator beat chance on replaced tokens.')
  .option('config', stringOption('training config (docs/CONFIG.md)', { default: path.join(root, 'configs', 'tiny.json'), defaultDescription: 'configs/tiny.json' }))
  .option('data', listOption('training data, passed to train.js --data', { default: [path.join(root, '..', 'shared', 'data', 'fr-roman19')], defaultDescription: '../shared/data/fr-roman19' }))
  .option('steps', integerOption('--steps', 'optimizer steps (train.js --max-steps)', { min: 1 }, { default: 300 }))
  .option('output-dir', stringOption('run directory (train.js --output-dir); --log-only reads its log.jsonl', { default: path.join(root, 'runs', 'curve'), defaultDescription: 'runs/curve' }))
  .option('threads', integerOption('--threads', 'intra-op CPU threads (forwards --set threads=N)', { min: 1 }))
  .option('set', listOption('more config overrides key.path=value, forwarded to train.js after logging.every=10 (so they win)'))
  .option('resume', flagOption('continue the run in --output-dir (train.js --resume auto) instead of refusing a directory that holds one', { default: false }))
  .option('log-only', flagOption('do not train: print the table and verdict of the run in --output-dir', { default: false }));

/** train.js arguments for these flags: the run's own flags, logging.every=10, then the user's --set. */
function trainArguments(args) {
  const out = [path.join(root, 'dist', 'train.js'), '--config', args.config, '--data', ...args.data.map(String),
    '--max-steps', String(args.steps), '--output-dir', args['output-dir'], '--set', 'logging.every=10'];
  if (args.threads !== undefined) out.push('--set', `threads=${args.threads}`);
  for (const override of args.set ?? []) out.push('--set', String(override));
  if (args.resume) out.push('--resume', 'auto');
  return out;
}

/**
 * Runs train.js in its own process group with stderr (and its stdout) on our stderr, so that our
 * stdout holds only the table. A terminal's Ctrl-C reaches only us; we pass each SIGINT/SIGTERM
 * on once, so the first one makes train.js checkpoint and stop, a second one stops it at once.
 */
function runTraining(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 2, 2], detached: true });
    const forward = (signal) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const handlers = { SIGINT: forward('SIGINT'), SIGTERM: forward('SIGTERM') };
    for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler);
    const done = () => { for (const [signal, handler] of Object.entries(handlers)) process.off(signal, handler); };
    child.on('error', (error) => { done(); reject(error); });
    child.on('exit', (code, signal) => { done(); resolve({ code, signal }); });
  });
}

const isEval = (record) => Object.keys(record).some((key) => key.startsWith('eval_'));

// Columns per objective: what a training row shows, and the eval_ key shown under it on eval rows.
const ELECTRA_COLUMNS = [
  ['gen_loss', 'gen_loss'], ['gen_accuracy', 'gen_acc'], ['disc_loss', 'disc_loss'], ['disc_accuracy', 'disc_acc'],
  ['disc_recall', 'disc_recall'], ['replaced_fraction', 'replaced'], ['disc_auc', 'auc'],
];
const MLM_COLUMNS = [['loss', 'loss'], ['mlm_accuracy', 'mlm_acc']];

function formatValue(value) {
  if (value === undefined) return '-';
  if (value === null) return 'nan'; // MetricsLog writes non-finite numbers as null
  return typeof value === 'number' ? value.toFixed(4) : String(value);
}

function table(records, columns) {
  const header = ['step', 'kind', ...columns.map(([, label]) => label)];
  const rows = records.map((record) => {
    const evalRow = isEval(record);
    return [String(record.step), evalRow ? 'eval' : 'train',
      ...columns.map(([key]) => formatValue(record[evalRow ? `eval_${key}` : key]))];
  });
  const widths = header.map((name, i) => Math.max(name.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

const fmt = (value) => (typeof value === 'number' ? value.toFixed(4) : 'nan');

function lossVerdict(first, last, key, what) {
  if (first === last) return `${what}: one logged window only (step ${last.step}): run more steps to see a trend`;
  const [a, b] = [first[key], last[key]];
  if (typeof a !== 'number' || typeof b !== 'number') return `${what}: not finite in the first or last window (${fmt(a)} -> ${fmt(b)}): NO`;
  const fell = b < a;
  return `${what}: ${fell ? 'FELL' : 'did NOT fall'}, ${fmt(a)} (step ${first.step}) -> ${fmt(b)} (step ${last.step}), ${(100 * (b - a) / a).toFixed(1)}%`;
}

/**
 * The discriminator beats chance when its recall (its accuracy on replaced tokens) exceeds the
 * replaced fraction, which is what answering "replaced" at that base rate would score; its
 * accuracy over all tokens is set against 1 - replaced_fraction, the score of always answering
 * "original" (the first thing it learns).
 */
function discriminatorVerdict(first, last) {
  const { disc_recall: recall, replaced_fraction: replaced, disc_accuracy: accuracy } = last;
  if (![recall, replaced, accuracy].every((v) => typeof v === 'number')) return `discriminator: not finite at step ${last.step}: NO`;
  const beatsRecall = recall > replaced;
  const beatsAccuracy = accuracy > 1 - replaced;
  const change = first === last ? '' : ` (from ${fmt(first.disc_recall)} at step ${first.step})`;
  return `discriminator: disc_recall ${fmt(recall)}${change} ${beatsRecall ? '>' : '<='} replaced_fraction ${fmt(replaced)} at step ${last.step}: `
    + `${beatsRecall ? 'ROSE ABOVE chance' : 'NOT above chance'}; disc_accuracy ${fmt(accuracy)} ${beatsAccuracy ? '>' : '<='} ${fmt(1 - replaced)} of always answering "original"`;
}

function report(outputDir) {
  const logFile = path.join(outputDir, 'log.jsonl');
  if (!fs.existsSync(logFile)) throw new UsageError(`${logFile} does not exist: no run in --output-dir ${outputDir}`);
  const records = readMetricsLog(logFile);
  const training = records.filter((record) => !isEval(record));
  if (training.length === 0) throw new UsageError(`${logFile} holds no training line yet`);
  const electra = 'gen_loss' in training[0];
  process.stdout.write(`${logFile}\n${table(records, electra ? ELECTRA_COLUMNS : MLM_COLUMNS)}\n\n`);
  const [first, last] = [training[0], training[training.length - 1]];
  const verdict = electra
    ? [lossVerdict(first, last, 'gen_loss', 'generator loss'), discriminatorVerdict(first, last)]
    : [lossVerdict(first, last, 'loss', 'MLM loss'),
      `MLM accuracy: ${fmt(first.mlm_accuracy)} (step ${first.step}) -> ${fmt(last.mlm_accuracy)} (step ${last.step}): ${last.mlm_accuracy > first.mlm_accuracy ? 'ROSE' : 'did NOT rise'}`];
  process.stdout.write(`${verdict.join('\n')}\n`);
}

void runCli(cli, async (args) => {
  const outputDir = path.resolve(args['output-dir']);
  if (!args['log-only']) {
    const { code, signal } = await runTraining(trainArguments(args));
    if (code !== 0) {
      const reason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      process.stderr.write(`pretrain-curve.js: train.js ${reason}\n`);
      // Stopped by SIGINT/SIGTERM after a checkpoint: what it logged so far is this run's curve.
      // Any other failure (2: a bad flag or config, nothing written) would show an older run's log.
      const stoppedBySignal = code === 130 || code === 143;
      const holdsRun = fs.existsSync(path.join(outputDir, 'checkpoints'));
      if (code === 2 && holdsRun && !args.resume) process.stderr.write('pretrain-curve.js: add --resume to continue that run, or --log-only to see its curve\n');
      if (stoppedBySignal && fs.existsSync(path.join(outputDir, 'log.jsonl'))) report(outputDir);
      process.exit(code ?? 1);
    }
  }
  report(outputDir);
});
