#!/usr/bin/env node
// predict.js: runs a fine-tuned model (finetune.js's OUTPUT_DIR or its model/ directory) on a file.
//   node dist/predict.js --model runs/upos --input test.conllu --output predicted.conllu
// CoNLL-U / CoNLL-2003 come back with the predicted column filled in (the parser fills HEAD and
// DEPREL); JSONL / TSV come back as JSONL with a "prediction" field. Bad input: one line, exit 2.
import * as fs from 'fs';
import * as path from 'path';
import { createCli, runCli, stringOption, integerOption, choiceOption, UsageError } from './cli/args';

const cli = createCli('predict.js', 'Predict with a fine-tuned model: CoNLL-U / CoNLL-2003 with the predicted columns filled in, or JSONL with a "prediction" field.')
  .option('model', stringOption('a fine-tuned model directory (finetune.js OUTPUT_DIR or OUTPUT_DIR/model)', { demandOption: true }))
  .option('input', stringOption('file to label: CoNLL-U / CoNLL-2003 (token classification, parsing) or JSONL / TSV (sequence classification)', { demandOption: true }))
  .option('output', stringOption('where the predictions go (default: stdout)'))
  .option('format', choiceOption('--format', 'input format (default: from the file)', ['conllu', 'conll2003', 'jsonl', 'tsv'] as const))
  .option('label-column', stringOption('token classification: the column to fill (default: the one the model was trained on; "last" for CoNLL-2003)'))
  .option('batch-size', integerOption('--batch-size', 'examples per forward pass', { min: 1 }, { default: 32 }))
  .option('threads', integerOption('--threads', 'intra-op CPU threads (0: one per core)', { min: 0 }, { default: 0 }));

void runCli(cli, async (args) => {
  if (args.output) {
    const directory = path.dirname(path.resolve(args.output));
    if (!fs.existsSync(directory) || !fs.statSync(directory).isDirectory()) throw new UsageError(`--output ${args.output}: the directory ${directory} does not exist`);
    if (fs.existsSync(args.output) && fs.statSync(args.output).isDirectory()) throw new UsageError(`--output ${args.output}: is a directory; give a file path`);
  }
  const os = await import('os');
  const { setNumThreads } = await import('./tensor');
  const { loadFinetuned, predictFile, disposeFinetuned } = await import('./finetune/predictor');
  const { writeFileAtomicSyncFrom } = await import('./io/atomic');
  setNumThreads(args.threads || os.cpus().length);
  const loaded = await loadFinetuned(args.model);
  try {
    const { text, examples } = predictFile(loaded, { input: args.input, format: args.format, labelColumn: args['label-column'], batchSize: args['batch-size'] });
    if (args.output) {
      writeFileAtomicSyncFrom(args.output, text);
      process.stderr.write(`predict.js: ${examples} example(s) of ${args.input} -> ${args.output}\n`);
    } else {
      process.stdout.write(text);
    }
  } finally {
    disposeFinetuned(loaded);
  }
});
