// npm run experiment:objectives -- [--budget-minutes M] [--seeds K] [--device cpu|cuda] [--output-dir DIR]
// ELECTRA + GDES, ELECTRA + ES, ELECTRA without sharing and a discriminator-sized MLM pretrained
// under one wall-time budget, fine-tuned on Sequoia UPOS and parsing over K seeds against a random
// initialisation; prints the Markdown table (also DIR/results.md) and writes DIR/objectives.png.
import * as path from 'path';
import { choiceOption, createCli, integerOption, listOption, numberOption, runCli, stringOption, UsageError } from './cli/args';
import { packageRoot } from './package-root';
import { ExperimentError, ChildFailed, runObjectivesExperiment } from './experiments/objectives';
import { markdownTable } from './experiments/table';
import { TrainConfigError } from './pretrain/config';

const root = packageRoot(__dirname);
const cli = createCli('experiment.js', 'Pretraining objectives under one compute budget: four arms pretrained for equal wall time, fine-tuned on Sequoia UPOS and dependency parsing over K seeds (random init as the floor); a Markdown table and a figure.')
  .option('budget-minutes', numberOption('--budget-minutes', 'wall-clock budget of the whole command, timing runs and data preparation included', { min: 0.5 }, { default: 30 }))
  .option('seeds', integerOption('--seeds', 'fine-tuning seeds per arm and task (1..K)', { min: 1, max: 20 }, { default: 2 }))
  .option('device', choiceOption('--device', 'where every run trains', ['cpu', 'cuda'] as const, { default: 'cpu' as const }))
  .option('output-dir', stringOption('the experiment directory (rerun with the same flags to continue it)', { default: 'runs/experiment-objectives' }))
  .option('data', stringOption('pretraining text (raw, prepared once into OUTPUT_DIR/data) or a prepared directory', { default: path.join(root, '..', 'shared', 'data', 'fr-roman19'), defaultDescription: '../shared/data/fr-roman19' }))
  .option('ud', stringOption('the UD French-Sequoia directory', { default: path.join(root, '..', 'shared', 'data', 'ud-french-sequoia'), defaultDescription: '../shared/data/ud-french-sequoia' }))
  .option('config', stringOption('the base pretraining config every arm starts from', { default: path.join(root, 'configs', 'experiment_objectives.json'), defaultDescription: 'configs/experiment_objectives.json' }))
  .option('threads', integerOption('--threads', 'intra-op CPU threads of every run (0: one per core)', { min: 0 }, { default: 0 }))
  .option('set', listOption('pretraining overrides key.path=value applied to every arm alike (e.g. model.preset=small on a GPU); objective and embedding sharing are the arms\' own'));

void runCli(cli, async (args) => {
  const extra = (args.set ?? []).map(String);
  for (const override of extra) {
    const key = override.split('=')[0];
    if (key === 'objective' || key.startsWith('electra.embedding_sharing') || key === 'max_steps' || key === 'max_seconds') {
      throw new UsageError(`--set ${override}: ${key} is what the experiment sets per arm`);
    }
  }
  const outputDir = path.resolve(args['output-dir']);
  try {
    const results = await runObjectivesExperiment({
      root, outputDir, data: path.resolve(args.data), ud: path.resolve(args.ud), baseConfig: path.resolve(args.config),
      budgetMinutes: args['budget-minutes'], seeds: Array.from({ length: args.seeds }, (_, i) => i + 1), device: args.device,
      threads: args.threads, extra, command: `npm run experiment:objectives -- ${process.argv.slice(2).join(' ')}`.trim(),
      say: (line) => process.stderr.write(`experiment: ${line}\n`),
    });
    const plan = require(path.join(outputDir, 'plan.json'));
    process.stdout.write(markdownTable(results, plan.max_seconds_supported));
  } catch (error) {
    if (error instanceof ChildFailed && (error.code === 130 || error.code === 143)) {
      process.stderr.write(`experiment.js: ${error.message}\n`);
      process.exit(error.code);
    }
    if (error instanceof ExperimentError || error instanceof TrainConfigError) throw new UsageError(error.message);
    throw error;
  }
});
