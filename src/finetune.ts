#!/usr/bin/env node
// finetune.js: fine-tunes an HF-format DeBERTa-V2/V3 or RoBERTa directory on a task and scores it.
//   node dist/finetune.js --task token-classification --model DIR --train FILE --dev FILE --test FILE --output-dir DIR [--seed N]
// Writes OUTPUT_DIR/results.json, OUTPUT_DIR/model/ (a directory transformers loads), log.jsonl and
// tensorboard/. Bad flags, configs and input files end as one line naming the file (and line), exit 2.
import { createCli, runCli, stringOption, listOption, integerOption, numberOption, choiceOption, flagOption, UsageError } from './cli/args';
import { TASKS, loadFinetuneConfig, FinetuneConfigError } from './finetune/config';

const cli = createCli('finetune.js', 'Fine-tune a DeBERTa-V2/V3 or RoBERTa model directory (ours or saved by transformers) for token classification (CoNLL-U / CoNLL-2003), sequence classification (JSONL / TSV) or biaffine dependency parsing (CoNLL-U); keeps the best epoch on dev and scores dev and test.')
  .option('config', stringOption('JSON config (keys: docs/FINETUNE.md; flags override it)'))
  .option('task', choiceOption('--task', 'what to train', TASKS))
  .option('model', stringOption('model directory: config.json, weights, a SentencePiece tokenizer (spm.model)'))
  .option('train', stringOption('training file'))
  .option('dev', stringOption('development file (the best epoch is chosen on it)'))
  .option('test', stringOption('test file (scored once, with the best epoch)'))
  .option('output-dir', stringOption('where results.json, model/, log.jsonl and tensorboard/ go'))
  .option('seed', integerOption('--seed', 'seed of the head initialisation, data order and dropout', { min: 0 }))
  .option('epochs', integerOption('--epochs', 'passes over the training file', { min: 1 }))
  .option('max-steps', integerOption('--max-steps', 'stop after this many optimizer steps', { min: 1 }))
  .option('batch-size', integerOption('--batch-size', 'examples per step', { min: 1 }))
  .option('lr', numberOption('--lr', 'peak learning rate', { min: 0 }))
  .option('label-column', stringOption('token classification: the label column (UPOS, XPOS, DEPREL, ... a 0-based position, or "last")'))
  .option('format', choiceOption('--format', 'input format (default: from the file)', ['auto', 'conllu', 'conll2003', 'jsonl', 'tsv'] as const))
  .option('random-init', flagOption('train the same architecture from random initialisation (the baseline): the directory gives the config and tokenizer only'))
  .option('threads', integerOption('--threads', 'intra-op CPU threads (0: one per core)', { min: 0 }))
  .option('device', choiceOption('--device', 'where to train', ['auto', 'cpu', 'cuda'] as const))
  .option('precision', choiceOption('--precision', 'autocast (float16 on CUDA only, with a dynamic loss scaler)', ['float32', 'bfloat16', 'float16'] as const))
  .option('overwrite', flagOption('replace the results and logs an earlier run left in --output-dir'))
  .option('quiet', flagOption('no progress bar'))
  .option('set', listOption('config overrides key.path=value, the value parsed as JSON when it parses (e.g. --set parser.arc_size=256)'))
  .example('$0 --task token-classification --model runs/roman/export/discriminator --train ../shared/data/ud-french-sequoia/fr_sequoia-ud-train.conllu --dev ../shared/data/ud-french-sequoia/fr_sequoia-ud-dev.conllu --test ../shared/data/ud-french-sequoia/fr_sequoia-ud-test.conllu --output-dir runs/upos', 'UPOS tagging on Sequoia');

void runCli(cli, async (args) => {
  const worldSize = Number(process.env.WORLD_SIZE ?? 1);
  if (worldSize > 1) throw new UsageError(`WORLD_SIZE=${worldSize}: multi-process fine-tuning is not built yet; run one process`);
  const overrides: Record<string, unknown> = {
    task: args.task, model: args.model, train: args.train, dev: args.dev, test: args.test, output_dir: args['output-dir'],
    seed: args.seed, epochs: args.epochs, max_steps: args['max-steps'], batch_size: args['batch-size'], lr: args.lr,
    label_column: args['label-column'], format: args.format, random_init: args['random-init'] ? true : undefined,
    threads: args.threads, device: args.device, precision: args.precision, 'logging.progress': args.quiet ? false : undefined,
  };
  try {
    const config = loadFinetuneConfig(args.config, overrides, (args.set ?? []).map(String));
    // libtorch is loaded only once the config is known to be valid.
    const { finetune } = await import('./finetune/trainer');
    await finetune({ config, overwrite: Boolean(args.overwrite) });
  } catch (error) {
    if (error instanceof FinetuneConfigError) {
      for (const problem of error.problems) process.stderr.write(`finetune.js: ${problem}\n`);
      process.exit(2);
    }
    throw error;
  }
});
