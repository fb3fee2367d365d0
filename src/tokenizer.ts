#!/usr/bin/env node
// tokenizer.js: train a SentencePiece tokenizer for DeBERTa-V3 / CamemBERTa, encode text, show a model.
import { createInterface } from 'readline';
import { existsSync, statSync } from 'fs';
import { createProgram, parseInteger, parseNumber, runProgram } from './cli/args';
import { createThroughputProgress } from './cli/progress';
import { NORMALIZATION_RULES, NormalizationRule } from './tokenizer/normalization';
import { trainTokenizer } from './tokenizer/train';
import { loadTokenizer } from './tokenizer/index';

const program = createProgram('tokenizer.js', 'SentencePiece tokenizer for DeBERTa-V3 / CamemBERTa pretraining');

program
  .command('train')
  .description('train a SentencePiece unigram model with DeBERTa-V3\'s special tokens (0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK]; [MASK] added at len(spm)) and write spm.model, tokenizer_config.json, special_tokens_map.json and tokenizer.json into DIR')
  .requiredOption('--input <paths...>', 'corpus files or directories (.txt, .txt.gz, .jsonl, .jsonl.gz)')
  .requiredOption('--vocab-size <n>', 'number of SentencePiece pieces, special pieces included ([MASK] comes on top)', parseInteger('--vocab-size', 8))
  .requiredOption('--output <dir>', 'directory to write the tokenizer files into')
  .option('--normalization <rule>', `text normalization: ${NORMALIZATION_RULES.join(', ')}; nfc matches transformers 5's DebertaV2Tokenizer, nmt_nfkc is SentencePiece's default`, 'nfc')
  .option('--character-coverage <fraction>', 'share of characters the pieces must cover', parseNumber('--character-coverage', 0.5, 1), 0.9999)
  .option('--max-sentences <n>', 'sentences SentencePiece samples from the corpus for training', parseInteger('--max-sentences', 1), 10_000_000)
  .option('--seed <n>', 'seed of SentencePiece\'s sentence sampling', parseInteger('--seed', 0), 42)
  .option('--threads <n>', 'trainer threads (default: all cores)', parseInteger('--threads', 1))
  .option('--byte-fallback', 'spell unknown characters as UTF-8 byte pieces instead of [UNK]')
  .option('--docs-per-line', 'each line of a .txt file is a document (default: blank lines separate documents)')
  .option('--locale <locale>', 'locale of the sentence splitter', 'fr')
  .option('--quiet', 'no progress or SentencePiece log on stderr')
  .action(async (options) => {
    if (!NORMALIZATION_RULES.includes(options.normalization)) {
      throw new Error(`--normalization must be one of ${NORMALIZATION_RULES.join(', ')}`);
    }
    const totalBytes = (options.input as string[]).reduce((sum, path) => sum + (existsSync(path) && statSync(path).isFile() ? statSync(path).size : 0), 0);
    const progress = createThroughputProgress(totalBytes, { enabled: !options.quiet, label: 'reading corpus' });
    const started = Date.now();
    const result = await trainTokenizer({
      inputs: options.input,
      vocabSize: options.vocabSize,
      outputDir: options.output,
      normalization: options.normalization as NormalizationRule,
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
  });

program
  .command('encode')
  .description('read lines on stdin, write one line of space-separated token ids per input line (no [CLS]/[SEP])')
  .requiredOption('--model <path>', 'SentencePiece model (spm.model)')
  .action(async (options) => {
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
  });

program
  .command('info')
  .description('print a model\'s size and special tokens as JSON (checked against a model config.json if given)')
  .requiredOption('--model <path>', 'SentencePiece model (spm.model)')
  .option('--config <path>', 'model config.json whose vocab_size / pad_token_id must agree')
  .action(async (options) => {
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
  });

void runProgram(program);
