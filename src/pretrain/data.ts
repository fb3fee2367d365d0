// Where a run's examples come from. `data.path` (or --data) is either a directory prepare wrote
// (manifest.json + shards) or raw text (.txt[.gz]/.jsonl[.gz] files or directories), which is
// tokenized into OUTPUT_DIR/data first, with the config's tokenizer or one trained on the text
// into OUTPUT_DIR/tokenizer. Both steps are resumable (prepare reuses finished shards).
// checkData() looks before anything is written, so a bad path fails the run with nothing created.
import * as fs from 'fs';
import * as path from 'path';
import { listCorpusFiles, CorpusError } from '../data/corpus';
import { prepare, readManifest, Manifest } from '../data/prepare';
import { trainTokenizer } from '../tokenizer/train';
import { TrainConfig, TrainConfigError } from './config';

export type DataSource =
  | { kind: 'prepared'; dir: string }
  | { kind: 'raw'; inputs: string[]; files: string[] };

function asList(value: string | string[]): string[] {
  return Array.isArray(value) ? value : [value];
}

function isPrepared(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'manifest.json'));
}

/** Classifies a data path and checks it holds something, without writing anything. */
export function checkData(value: string | string[] | null, key: string, source: string): DataSource {
  if (value === null) throw new TrainConfigError(source, [{ key, message: 'no training data: set data.path or pass --data' }]);
  const inputs = asList(value);
  if (inputs.length === 1 && isPrepared(inputs[0])) {
    let manifest: Manifest;
    try {
      manifest = readManifest(inputs[0]);
    } catch (error) {
      throw new TrainConfigError(source, [{ key, message: (error as Error).message }]);
    }
    if (manifest.counts.tokens === 0) throw new TrainConfigError(source, [{ key, message: `${inputs[0]} holds no tokens` }]);
    return { kind: 'prepared', dir: path.resolve(inputs[0]) };
  }
  let files: string[];
  try {
    files = listCorpusFiles(inputs);
  } catch (error) {
    if (error instanceof CorpusError) throw new TrainConfigError(source, [{ key, message: error.message }]);
    throw error;
  }
  const bytes = files.reduce((sum, file) => sum + fs.statSync(file).size, 0);
  if (bytes === 0) throw new TrainConfigError(source, [{ key, message: `the corpus files under ${inputs.join(', ')} are all empty` }]);
  return { kind: 'raw', inputs: inputs.map((p) => path.resolve(p)), files };
}

export interface PreparedData {
  dir: string;
  manifest: Manifest;
  tokenizerPath: string;
}

export interface DataLog {
  info(message: string): void;
  warn(message: string): void;
}

/** The prepared directory for a source: as is, or prepared (and a tokenizer trained) under outputDir. */
export async function prepareData(source: DataSource, config: TrainConfig, outputDir: string, log: DataLog,
  options: { name: string; tokenizerPath?: string; heldOutFraction: number }): Promise<PreparedData> {
  if (source.kind === 'prepared') {
    const manifest = readManifest(source.dir);
    return { dir: source.dir, manifest, tokenizerPath: path.join(source.dir, manifest.tokenizer.file) };
  }
  let tokenizerPath = options.tokenizerPath ?? config.data.tokenizer ?? undefined;
  if (!tokenizerPath) {
    const tokenizerDir = path.join(outputDir, 'tokenizer');
    tokenizerPath = path.join(tokenizerDir, 'spm.model');
    if (!fs.existsSync(tokenizerPath)) {
      log.info(`training a ${config.data.tokenizer_vocab_size}-piece SentencePiece tokenizer on ${source.inputs.join(', ')}`);
      await trainTokenizer({ inputs: source.files, vocabSize: config.data.tokenizer_vocab_size, outputDir: tokenizerDir, seed: config.seed, onWarning: log.warn });
    }
  }
  const dir = path.join(outputDir, options.name);
  log.info(`preparing ${source.files.length} file(s) into ${dir}`);
  const manifest = await prepare({
    inputs: source.files,
    tokenizerPath,
    outputDir: dir,
    heldOutFraction: options.heldOutFraction,
    onWarning: log.warn,
  });
  return { dir, manifest, tokenizerPath: path.join(dir, manifest.tokenizer.file) };
}

/** What prepareData made of a source, opened without writing (the ranks that follow rank 0). */
export function openPreparedData(source: DataSource, outputDir: string, name: string): PreparedData {
  const dir = source.kind === 'prepared' ? source.dir : path.join(outputDir, name);
  const manifest = readManifest(dir);
  return { dir, manifest, tokenizerPath: path.join(dir, manifest.tokenizer.file) };
}
