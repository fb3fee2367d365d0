// Tokenizer training: corpus -> SentencePiece unigram spm.model with DeBERTa-V3's special-token layout
// (0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK]; [MASK] appended by transformers at len(spm)) plus the HF files.
// The training itself is SentencePiece's own trainer: Debian's `spm_train`, or, when it is missing,
// the Python `sentencepiece` module.
import { spawn, spawnSync } from 'child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { availableParallelism, tmpdir } from 'os';
import { join } from 'path';
import { once } from 'events';
import { emptyCorpusStats, listCorpusFiles, readCorpus, CorpusStats } from '../corpus/read';
import { createSentenceSplitter } from '../corpus/sentences';
import { NormalizationRule, nfcRuleTsv } from './normalization';
import { readSentencePieceModel } from './spm-model';
import { resolveSpecialTokens, SpecialTokens } from './special-tokens';
import { saveHfTokenizer } from './hf-files';

export interface TrainOptions {
  inputs: string[];
  vocabSize: number;
  outputDir: string;
  normalization?: NormalizationRule;
  characterCoverage?: number;
  /** sentences the trainer samples (SentencePiece's input_sentence_size); default 10 million */
  maxSentences?: number;
  seed?: number;
  threads?: number;
  byteFallback?: boolean;
  docsPerLine?: boolean;
  locale?: string;
  modelMaxLength?: number;
  onWarning?: (message: string) => void;
  onBytes?: (bytes: number) => void;
  /** SentencePiece's log lines */
  onLog?: (line: string) => void;
}

export interface TrainResult {
  modelPath: string;
  special: SpecialTokens;
  corpus: CorpusStats;
  sentences: number;
  trainer: string;
}

export class TrainerMissingError extends Error {}

const PYTHON_TRAINER = 'import sys, sentencepiece as spm; spm.SentencePieceTrainer.train(" ".join(sys.argv[1:]))';

function hasSpmTrain(): boolean {
  return spawnSync('spm_train', ['--version'], { stdio: 'ignore' }).status === 0;
}

function pythonWithSentencePiece(): string | undefined {
  for (const candidate of [process.env.PYTHON, 'python3'].filter(Boolean) as string[]) {
    if (spawnSync(candidate, ['-c', 'import sentencepiece'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

async function run(command: string, args: string[], onLog?: (line: string) => void): Promise<void> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      tail.push(line);
      if (tail.length > 20) tail.shift();
      onLog?.(line);
    }
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`${command} failed (exit ${code}):\n${tail.join('\n')}`);
}

export async function trainTokenizer(options: TrainOptions): Promise<TrainResult> {
  const normalization = options.normalization ?? 'nfc';
  const trainer = hasSpmTrain() ? 'spm_train' : pythonWithSentencePiece();
  if (!trainer) {
    throw new TrainerMissingError('no SentencePiece trainer: install Debian\'s sentencepiece package (apt-get install sentencepiece, gives spm_train) or Python\'s (pip install sentencepiece; set $PYTHON to that interpreter)');
  }
  const files = listCorpusFiles(options.inputs);
  mkdirSync(options.outputDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'camemberta-spm-'));
  try {
    // SentencePiece trains on sentences, one a line: the same sentences prepare will tokenize.
    const sentencesPath = join(work, 'sentences.txt');
    const sink = createWriteStream(sentencesPath);
    const split = createSentenceSplitter(options.locale ?? 'fr');
    const corpus = emptyCorpusStats();
    let sentences = 0;
    for await (const document of readCorpus(files, corpus, { docsPerLine: options.docsPerLine, onWarning: options.onWarning, onBytes: options.onBytes })) {
      const lines: string[] = [];
      for (const paragraph of document.lines) for (const sentence of split(paragraph)) lines.push(sentence);
      sentences += lines.length;
      if (!sink.write(lines.join('\n') + '\n')) await once(sink, 'drain');
    }
    sink.end();
    await once(sink, 'finish');
    if (sentences === 0) throw new Error(`no text in ${options.inputs.join(', ')}`);

    const prefix = join(work, 'spm');
    const flags = [
      `--input=${sentencesPath}`,
      `--model_prefix=${prefix}`,
      '--model_type=unigram',
      `--vocab_size=${options.vocabSize}`,
      '--pad_id=0', '--pad_piece=[PAD]',
      '--bos_id=1', '--bos_piece=[CLS]',
      '--eos_id=2', '--eos_piece=[SEP]',
      '--unk_id=3', '--unk_piece=[UNK]',
      `--character_coverage=${options.characterCoverage ?? 0.9999}`,
      `--input_sentence_size=${options.maxSentences ?? 10_000_000}`,
      '--shuffle_input_sentence=true',
      `--random_seed=${options.seed ?? 42}`,
      `--num_threads=${options.threads ?? availableParallelism()}`,
      '--max_sentence_length=16384',
      `--byte_fallback=${options.byteFallback ? 'true' : 'false'}`,
      '--minloglevel=1',
    ];
    if (normalization === 'nfc') {
      const tsv = join(work, 'nfc.tsv');
      writeFileSync(tsv, nfcRuleTsv());
      flags.push(`--normalization_rule_tsv=${tsv}`);
    } else {
      flags.push(`--normalization_rule_name=${normalization}`);
    }
    if (trainer === 'spm_train') await run('spm_train', flags, options.onLog);
    else await run(trainer, ['-c', PYTHON_TRAINER, ...flags], options.onLog);

    const model = readSentencePieceModel(`${prefix}.model`);
    const special = resolveSpecialTokens(model);
    saveHfTokenizer(options.outputDir, model, special, options.modelMaxLength ?? 512);
    return { modelPath: join(options.outputDir, 'spm.model'), special, corpus, sentences, trainer };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
