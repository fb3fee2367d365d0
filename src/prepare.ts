#!/usr/bin/env node
// prepare.js: corpus -> tokenized binary shards + manifest.json, for pretraining (docs/DATA.md).
import { statSync } from 'fs';
import { createProgram, parseInteger, parseNumber, runProgram } from './cli/args';
import { createThroughputProgress } from './cli/progress';
import { listCorpusFiles } from './data/corpus';
import { prepare } from './data/prepare';

const program = createProgram('prepare.js', 'tokenize a text corpus into binary shards for pretraining (resumable: rerun after an interruption to finish)');

program
  .requiredOption('--input <paths...>', 'corpus files or directories (.txt, .txt.gz, .jsonl with a "text" field, .jsonl.gz)')
  .requiredOption('--tokenizer <path>', 'SentencePiece model (spm.model); special tokens are read from it and the HF files beside it')
  .requiredOption('--output <dir>', 'directory for shard-NNNNN.bin, manifest.json and a copy of the tokenizer')
  .option('--docs-per-line', 'each line of a .txt file is a document (default: blank lines separate documents)')
  .option('--max-line-chars <n>', 'lines longer than this are split at a space (counted in the manifest)', parseInteger('--max-line-chars', 1000), 100_000)
  .option('--shard-size-mb <n>', 'raw text per shard, millions of characters', parseNumber('--shard-size-mb', 0.001), 256)
  .option('--threads <n>', 'tokenizer worker threads (default: all cores)', parseInteger('--threads', 1))
  .option('--locale <locale>', 'locale of the sentence splitter', 'fr')
  .option('--overwrite', 'replace shards prepared with other inputs, tokenizer or settings instead of refusing')
  .option('--quiet', 'no progress on stderr')
  .addHelpText('after', '\nSequence length and example building (ELECTRA pairs or full-sentence packing) are chosen when\nthe shards are read for training, so one preparation serves both the 128 and the 512 phase.')
  .action(async (options) => {
    const files = listCorpusFiles(options.input);
    const totalBytes = files.reduce((sum, file) => sum + statSync(file).size, 0);
    const progress = createThroughputProgress(totalBytes, { enabled: !options.quiet, label: 'prepare' });
    process.once('SIGINT', () => {
      progress.stop();
      process.stderr.write('\nprepare.js: interrupted; finished shards are kept, run the same command again to resume\n');
      process.exit(130);
    });
    const manifest = await prepare({
      inputs: options.input,
      tokenizerPath: options.tokenizer,
      outputDir: options.output,
      docsPerLine: options.docsPerLine,
      maxLineChars: options.maxLineChars,
      shardSizeMB: options.shardSizeMb,
      threads: options.threads,
      locale: options.locale,
      overwrite: options.overwrite,
      onWarning: (message) => progress.log(`warning: ${message}`),
      onInfo: (message) => { if (!options.quiet) progress.log(`prepare.js: ${message}`); },
      onBytes: (bytes) => progress.addBytes(bytes),
      onTokens: (tokens) => progress.addTokens(tokens),
    });
    const { seconds } = progress.stop();
    const c = manifest.counts;
    process.stderr.write(
      `prepare.js: ${c.documents} documents, ${c.sentences} sentences, ${c.tokens} tokens in ${c.shards} shards ` +
      `(${c.shardsReused} reused) in ${seconds.toFixed(1)} s; skipped ${c.emptyFiles} empty files, ${c.emptyDocuments} empty documents; ` +
      `${c.invalidUtf8Replacements} invalid UTF-8 replacements, ${c.longLineSplits} long-line splits\n`,
    );
  });

void runProgram(program);
