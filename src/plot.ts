// node dist/plot.js RUN... --output FILE.png|FILE.svg
// Pretraining curves of any train.js runs (generator/MLM and discriminator losses, held-out MLM
// accuracy and discriminator AUC against tokens seen), plus the downstream scores when an input is
// an experiment directory (npm run experiment:objectives).
import * as path from 'path';
import { choiceOption, createCli, integerOption, listOption, numberOption, runCli, stringOption, UsageError } from './cli/args';
import { writeFileAtomicSyncFrom } from './io/atomic';
import { figureSpec, loadPlotInputs, renderSvg, svgToPng } from './experiments/plot';

const cli = createCli('plot.js', 'Render the learning curves of train.js runs (log.jsonl) and an objectives experiment\'s downstream scores as one PNG or SVG (Vega-Lite).', {
  usage: '$0 RUN_DIR|log.jsonl|EXPERIMENT_DIR... --output FILE.png|FILE.svg',
})
  // Runs are positional: unknown flags stay errors, bare arguments are the runs.
  .strict(false)
  .strictOptions()
  .option('output', stringOption('the figure: .png or .svg (replaced atomically)', { demandOption: true }))
  .option('label', listOption('names of the runs, in the order given (default: each run directory\'s name; an experiment names its arms)'))
  .option('x', choiceOption('--x', 'horizontal axis of the curves', ['tokens', 'step'] as const, { default: 'tokens' as const }))
  .option('title', stringOption('the figure\'s title'))
  .option('scale', numberOption('--scale', 'PNG pixels per SVG unit', { min: 0.5, max: 8 }, { default: 2 }))
  .option('panel-width', integerOption('--panel-width', 'width of one curve panel', { min: 100, max: 2000 }, { default: 260 }));

void runCli(cli, async (args) => {
  const inputs = args._.map(String);
  const output = path.resolve(args.output);
  const extension = path.extname(output).toLowerCase();
  if (extension !== '.png' && extension !== '.svg') throw new UsageError(`--output ${args.output}: the name must end in .png or .svg`);
  let plotInputs;
  try {
    plotInputs = loadPlotInputs(inputs, args.label ?? []);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const svg = await renderSvg(figureSpec(plotInputs, { x: args.x, title: args.title, panelWidth: args['panel-width'] }));
  writeFileAtomicSyncFrom(output, extension === '.svg' ? svg : svgToPng(svg, args.scale));
  const points = plotInputs.runs.reduce((n, r) => n + r.points.length, 0);
  process.stderr.write(`plot.js: ${path.relative(process.cwd(), output) || output}: ${plotInputs.runs.length} run(s), ${points} points${plotInputs.experiment ? `, ${plotInputs.experiment.downstream.length} fine-tuning runs` : ''}\n`);
});
