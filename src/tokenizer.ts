#!/usr/bin/env node
// tokenizer.js: train a SentencePiece tokenizer for DeBERTa-V3 / CamemBERTa, encode text, show a model.
import { createInterface } from 'readline';
import { existsSync, statSync } from 'fs';
import { choiceOption, createCli, flagOption, integerOption, listOption, numberOption, runCli, stringOption, UsageError } from './cli/args';
import { createThroughputProgress } from './cli/progress';
import { NORMALIZATION_RULES, NormalizationRule } from './tokenizer/normalization';
import { trainTokenizer } from './tokenizer/train';
import { loadTokenizer } from './tokenizer/index';

const cli = createCli('tokenizer.js', 'SentencePiece tokenizer for DeBERTa-V3 / CamemBERTa pretraining', { usage: '$0 <command> [options]' })
  .demandCommand(1, 'give a command: train, encode, info or extend');

cli.command(
  'train',
  'train a SentencePiece unigram model with DeBERTa-V3\'s special tokens (0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK]; [MASK] added at len(spm)) and write spm.model, tokenizer_config.json, special_tokens_map.json and tokenizer.json into --output',
  (command) => command
    .option('input', listOption('corpus files or directories (.txt, .txt.gz, .jsonl, .jsonl.gz)', { demandOption: true }))
    .option('vocab-size', integerOption('--vocab-size', 'number of SentencePiece pieces, special pieces included ([MASK] comes on top)', { min: 8 }, { demandOption: true }))
    .option('output', stringOption('directory to write the tokenizer files into', { demandOption: true }))
    .option('normalization', choiceOption('--normalization', 'text normalization: nfc matches transformers 5\'s DebertaV2Tokenizer, nmt_nfkc is SentencePiece\'s default', NORMALIZATION_RULES, { default: 'nfc' as NormalizationRule }))
    .option('character-coverage', numberOption('--character-coverage', 'share of characters the pieces must cover', { min: 0.5, max: 1 }, { default: 0.9999 }))
    .option('max-sentences', integerOption('--max-sentences', 'sentences SentencePiece samples from the corpus for training', { min: 1 }, { default: 10_000_000 }))
    .option('seed', integerOption('--seed', 'seed of SentencePiece\'s sentence sampling', { min: 0 }, { default: 42 }))
    .option('threads', integerOption('--threads', 'trainer threads', { min: 1 }, { defaultDescription: 'all cores' }))
    .option('byte-fallback', flagOption('spell unknown characters as UTF-8 byte pieces instead of [UNK]', { default: false }))
    .option('docs-per-line', flagOption('each line of a .txt file is a document (otherwise blank lines separate documents)', { default: false }))
    .option('locale', stringOption('locale of the sentence splitter', { default: 'fr' }))
    .option('quiet', flagOption('no progress or SentencePiece log on stderr', { default: false })),
  async (options) => {
    const totalBytes = options.input.reduce((sum, path) => sum + (existsSync(path) && statSync(path).isFile() ? statSync(path).size : 0), 0);
    const progress = createThroughputProgress(totalBytes, { enabled: !options.quiet, label: 'reading corpus' });
    const started = Date.now();
    const result = await trainTokenizer({
      inputs: options.input,
      vocabSize: options.vocabSize,
      outputDir: options.output,
      normalization: options.normalization,
      characterCoverage: options.characterCoverage,
      maxSentences: options.maxSentences,
      seed: options.seed,
      threads: options.threads,
      byteFallback: options.byteFallback,
      docsPerLine: options.docsPerLine,
      locale: options.locale,
      onWarning: (message) => progress.log(`warning: ${message}`),
      onBytes: (bytes) => progress.addBytes(bytes),
      onLog: options.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    progress.stop();
    const { ids } = result.special;
    process.stderr.write(`trained with ${result.trainer} on ${result.sentences} sentences of ${result.corpus.documents} documents in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    process.stdout.write(`${result.modelPath}: ${result.special.vocabSize} ids (pad ${ids.pad}, cls ${ids.cls}, sep ${ids.sep}, unk ${ids.unk}, mask ${ids.mask})\n`);
  },
);

cli.command(
  'encode',
  'read lines on stdin, write one line of space-separated token ids per input line (no [CLS]/[SEP])',
  (command) => command.option('model', stringOption('SentencePiece model (spm.model)', { demandOption: true })),
  async (options) => {
    const { sp } = await loadTokenizer(options.model);
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    let batch: string[] = [];
    const flush = async () => {
      const { ids, lengths } = sp.encodeMany(batch);
      let offset = 0;
      const out: string[] = [];
      for (const length of lengths) {
        out.push(Array.from(ids.subarray(offset, offset + length)).join(' '));
        offset += length;
      }
      batch = [];
      if (!process.stdout.write(out.join('\n') + '\n')) await new Promise((resolve) => process.stdout.once('drain', resolve));
    };
    for await (const line of lines) {
      batch.push(line);
      if (batch.length >= 4096) await flush();
    }
    if (batch.length) await flush();
  },
);

cli.command(
  'info',
  'print a model\'s size and special tokens as JSON (checked against a model config.json if given)',
  (command) => command
    .option('model', stringOption('SentencePiece model (spm.model)', { demandOption: true }))
    .option('config', stringOption('model config.json whose vocab_size / pad_token_id must agree')),
  async (options) => {
    const tokenizer = await loadTokenizer(options.model, { modelConfig: options.config });
    const { model } = tokenizer.sp;
    process.stdout.write(JSON.stringify({
      pieces: tokenizer.sp.pieceCount,
      vocabSize: tokenizer.vocabSize,
      sha256: tokenizer.sp.sha256,
      modelType: model.trainer.modelType,
      normalization: model.normalizer.name,
      specialTokens: tokenizer.special.ids,
      specialTokenStrings: tokenizer.special.strings,
    }, null, 2) + '\n');
  },
);

cli.command(
  'extend',
  'append word pieces to a SentencePiece unigram model after every existing id (old ids keep their pieces) and write spm.model, the HF tokenizer files and extension.json into --output; continued pretraining with it grows the embedding rows (docs/CONTINUED-PRETRAINING.md)',
  (command) => command
    .option('model', stringOption('the tokenizer to extend: a directory with spm.model (a model directory works) or the spm.model file', { demandOption: true }))
    .option('add', stringOption('words to add, one per line (blank lines and # comments skipped)'))
    .option('from-corpus', listOption('instead of --add: corpus files or directories to pick words from (.txt, .txt.gz, .jsonl, .jsonl.gz)'))
    .option('count', integerOption('--count', 'with --from-corpus: words to add, those saving the most tokens (occurrences x (pieces - 1))', { min: 1 }))
    .option('min-pieces', integerOption('--min-pieces', 'with --from-corpus: only words the tokenizer splits into at least this many pieces', { min: 2 }, { default: 2 }))
    .option('output', stringOption('directory to write the extended tokenizer into (replaced whole)', { demandOption: true }))
    .check((argv) => {
      if ((argv.add === undefined) === (argv['from-corpus'] === undefined)) throw new UsageError('give one of --add FILE or --from-corpus DIR --count N');
      if (argv['from-corpus'] !== undefined && argv.count === undefined) throw new UsageError('--from-corpus needs --count N');
      return true;
    }),
  async (options) => {
    const { extendTokenizer, readWordList, wordsFromCorpus, tokenizerFileOf, ExtendError } = await import('./tokenizer/extend');
    try {
      let words: { word: string; count?: number }[];
      if (options.add !== undefined) {
        words = readWordList(options.add).map((word) => ({ word }));
      } else {
        const { sp } = await loadTokenizer(tokenizerFileOf(options.model));
        words = await wordsFromCorpus(options.fromCorpus!, sp, { count: options.count!, minPieces: options.minPieces });
      }
      const result = await extendTokenizer({ model: options.model, words, outputDir: options.output });
      for (const skip of result.skipped) process.stderr.write(`skipped ${skip.word}: ${skip.reason}\n`);
      for (const a of result.added) process.stderr.write(`${a.id}\t${a.piece}\t(was ${a.oldPieces.join(' ')}${a.count === undefined ? '' : `; ${a.count} occurrences`})\n`);
      process.stdout.write(`${result.outputDir}: ${result.ids} ids (${result.base.ids} + ${result.added.length} new pieces)\n`);
    } catch (error) {
      if (error instanceof ExtendError) throw new UsageError(error.message);
      throw error;
    }
  },
);

void runCli(cli);
