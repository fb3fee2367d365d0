#!/usr/bin/env node
// export.js: a training checkpoint -> directories transformers loads (see src/pretrain/export.ts).
//   node dist/export.js --checkpoint runs/x/checkpoints/step-00001000 --output runs/x/export-1000
import { createCli, runCli, stringOption, flagOption, UsageError } from './cli/args';
import { Generator } from './tensor';
import { loadTokenizer } from './tokenizer/index';
import { parseTrainConfig } from './pretrain/config';
import { buildModelConfigs, createPretrainingModel } from './pretrain/models';
import { loadCheckpoint, resolveCheckpoint, checkpointTokenizer } from './pretrain/checkpoint';
import { exportRun } from './pretrain/export';
import { tidy } from './tensor';

const cli = createCli('export.js', 'Export a pretraining checkpoint for transformers: discriminator/ (AutoModel, with rtd_head.safetensors) and generator/ (AutoModelForMaskedLM) for ELECTRA, model/ for MLM, each with its tokenizer files.')
  .option('checkpoint', stringOption('a checkpoint directory (OUTPUT_DIR/checkpoints/step-N), or a run directory for its newest checkpoint', { demandOption: true }))
  .option('output', stringOption('export directory (replaced atomically if it exists)', { demandOption: true }))
  .option('pytorch-bin', flagOption('also write pytorch_model.bin beside model.safetensors', { default: false }));

void runCli(cli, async (args) => {
  let dir: string;
  try {
    dir = resolveCheckpoint(args.checkpoint);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const tokenizer = await loadTokenizer(checkpointTokenizer(dir));
  const checkpoint = tidy(() => loadCheckpoint(dir));
  const config = parseTrainConfig(checkpoint.meta.config, `${dir}/trainer.json`);
  const configs = buildModelConfigs(config, { vocabSize: tokenizer.vocabSize, ids: tokenizer.special.ids }, `${dir}/trainer.json`);
  const model = createPretrainingModel(config, configs, { init: 'none', generator: new Generator({ seed: 0 }) });
  model.loadStateDict(checkpoint.model);
  for (const t of checkpoint.model.values()) t.dispose();
  for (const t of checkpoint.state.values()) t.dispose();
  model.eval();
  exportRun(model, configs, tokenizer, args.output, { pytorchBin: args['pytorch-bin'] });
  process.stderr.write(`export.js: step ${checkpoint.meta.step} of ${dir} -> ${args.output}\n`);
  model.dispose();
});
