#!/usr/bin/env node
// prepare.js: corpus -> tokenized binary shards + manifest.json, for pretraining (docs/DATA.md).
import { statSync } from 'fs';
import { createCli, flagOption, integerOption, listOption, numberOption, runCli, stringOption, UsageError } from './cli/args';
import { createThroughputProgress } from './cli/progress';
import { listCorpusFiles } from './data/corpus';
import { prepare } from './data/prepare';
import { readManifest, verifyShardChecksums } from './data/manifest';
import { DEFAULT_HELD_OUT_FRACTION } from './data/held-out';

const cli = createCli('prepare.js', 'tokenize a text corpus into binary shards for pretraining (resumable: rerun after an interruption to finish)')
  .option('input', listOption('corpus files or directories (.txt, .txt.gz, .jsonl with a "text" field, .jsonl.gz); required unless --verify'))
  .option('tokenizer', stringOption('SentencePiece model (spm.model); special tokens are read from it and the HF files beside it; required unless --verify'))
  .option('output', stringOption('directory for shard-NNNNN.bin, manifest.json and a copy of the tokenizer', { demandOption: true }))
  .option('docs-per-line', flagOption('each line of a .txt file is a document (otherwise blank lines separate documents)', { default: false }))
  .option('max-line-chars', integerOption('--max-line-chars', 'lines longer than this are split at a space (counted in the manifest)', { min: 1000 }, { default: 100_000 }))
  .option('shard-size-mb', numberOption('--shard-size-mb', 'raw text per shard, millions of characters', { min: 0.001 }, { default: 256 }))
  .option('held-out-fraction', numberOption('--held-out-fraction', 'share of the documents held out for evaluation, chosen by a hash of their index in the input (0: none; recorded in manifest.json, no shard changes)', { min: 0, max: 0.5 }, { default: DEFAULT_HELD_OUT_FRACTION }))
  .option('threads', integerOption('--threads', 'tokenizer worker threads', { min: 1 }, { defaultDescription: 'all cores' }))
  .option('locale', stringOption('locale of the sentence splitter', { default: 'fr' }))
  .option('overwrite', flagOption('replace shards prepared with other inputs, tokenizer or settings instead of refusing', { default: false }))
  .option('quiet', flagOption('no progress on stderr', { default: false }))
  .option('verify', flagOption('only check the prepared --output: every shard\'s size, header and sha256 against manifest.json (writes nothing)', { default: false }))
  .epilog('Sequence length and example building (ELECTRA pairs or full-sentence packing) are chosen when\nthe shards are read for training, so one preparation serves both the 128 and the 512 phase.');

void runCli(cli, async (options) => {
  if (options.verify) {
    const manifest = readManifest(options.output);
    const started = Date.now();
    const bytes = verifyShardChecksums(options.output, manifest);
    process.stderr.write(`prepare.js: ${options.output}: ${manifest.counts.shards} shards (${(bytes / 1e6).toFixed(1)} MB) match manifest.json: sizes, headers and sha256 (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    return;
  }
  const missing = (['input', 'tokenizer'] as const).filter((key) => options[key] === undefined);
  if (missing.length) throw new UsageError(`missing required option${missing.length > 1 ? 's' : ''} ${missing.map((key) => `--${key}`).join(', ')} (or --verify)`);
  const inputs = options.input!;
  const tokenizerPath = options.tokenizer!;
  const files = listCorpusFiles(inputs);
  const totalBytes = files.reduce((sum, file) => sum + statSync(file).size, 0);
  const progress = createThroughputProgress(totalBytes, { enabled: !options.quiet, label: 'prepare' });
  process.once('SIGINT', () => {
    progress.stop();
    process.stderr.write('\nprepare.js: interrupted; finished shards are kept, run the same command again to resume\n');
    process.exit(130);
  });
  const manifest = await prepare({
    inputs,
    tokenizerPath,
    outputDir: options.output,
    docsPerLine: options.docsPerLine,
    maxLineChars: options.maxLineChars,
    shardSizeMB: options.shardSizeMb,
    heldOutFraction: options.heldOutFraction,
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
    `(${c.shardsReused} reused; ${c.heldOutDocuments} documents held out) in ${seconds.toFixed(1)} s; skipped ${c.emptyFiles} empty files, ${c.emptyDocuments} empty documents; ` +
    `${c.invalidUtf8Replacements} invalid UTF-8 replacements, ${c.longLineSplits} long-line splits\n`,
  );
});
