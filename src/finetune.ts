#!/usr/bin/env node
// finetune.js: fine-tunes an HF-format DeBERTa-V2/V3 or RoBERTa directory on a task and scores it.
//   node dist/finetune.js --task token-classification --model DIR --train FILE --dev FILE --test FILE --output-dir DIR [--seed N]
// Writes OUTPUT_DIR/results.json, OUTPUT_DIR/model/ (a directory transformers loads), log.jsonl and
// tensorboard/. Bad flags, configs and input files end as one line naming the file (and line), exit 2.
// Under launch.js, torchrun or SLURM it is one rank of a data-parallel run: batch_size is the global
// batch, rank 0 evaluates and writes (docs/FINETUNE.md, "Several processes").
import { createCli, runCli, stringOption, listOption, integerOption, numberOption, choiceOption, flagOption, UsageError } from './cli/args';
import { TASKS, loadFinetuneConfig, FinetuneConfigError, differingFinetuneKeys } from './finetune/config';
import { resolveDistributedEnv, DistributedEnv, DistributedEnvError } from './dist/env';

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
  .option('batch-size', integerOption('--batch-size', 'examples per step (the global batch: all ranks together)', { min: 1 }))
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
  // One process, or one rank of several (launch.js, torchrun, SLURM: docs/FINETUNE.md, docs/DISTRIBUTED.md).
  let env: DistributedEnv;
  try {
    env = resolveDistributedEnv();
  } catch (error) {
    if (error instanceof DistributedEnvError) throw new UsageError(error.message);
    throw error;
  }
  const who = env.worldSize > 1 ? `finetune.js: rank ${env.rank}` : 'finetune.js';
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
    const joined = env.worldSize > 1 ? await (await import('./pretrain/distributed')).joinRanks(env, config, differingFinetuneKeys) : null;
    const context = joined?.context ?? { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, cpuThreads: env.cpuThreads };
    // Ranks restarted by the launcher (torchrun --max-restarts, a requeued SLURM job) start again: fine-tuning
    // has no checkpoints, and what the output directory holds is the failed attempt's.
    const overwrite = Boolean(args.overwrite) || env.restartCount > 0;
    await finetune({ config, overwrite, parallel: joined?.parallel, context, source: args.config ?? 'flags' });
    joined?.parallel.close();
  } catch (error) {
    if (error instanceof FinetuneConfigError) {
      for (const problem of error.problems) process.stderr.write(`${who}: ${problem}\n`);
      process.exit(2);
    }
    // Ranks given different flags or configs: the keys, exit 2 as any config problem.
    if (error instanceof Error && error.name === 'ConfigMismatchError') {
      process.stderr.write(`${who}: ${error.message}\n`);
      process.exit(2);
    }
    // A peer that died or hangs, a port in use, an unreachable master: one line, not a stack.
    if (error instanceof Error && error.name === 'DistributedError') {
      process.stderr.write(`${who}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
});
