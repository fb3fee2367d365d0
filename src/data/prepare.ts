// Corpus -> tokenized binary shards + manifest.json (see docs/DATA.md for the format and guarantees).
//
// Shard boundaries are decided from the raw text alone (a shard closes after the document that brings
// its text to `shardSizeMB`), so a rerun knows which documents belong to shards that already exist and
// skips them without tokenizing. Documents are tokenized in worker threads, in units of about 1 MB,
// and written strictly in corpus order: the output depends only on the inputs, the tokenizer and the
// settings, never on timing or thread count.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'fs';
import { join } from 'path';
import { LoadedTokenizer, SentencePieceBackend, loadTokenizer } from '../tokenizer/index';
import { emptyCorpusStats, listCorpusFiles, readCorpus } from './corpus';
import { ShardHeader, ShardWriter, isUnfinishedShardFile, readShardHeader, shardFileName, tokenWidthFor } from './shard';
import { TokenizePool } from './worker-pool';
import { writeFileAtomicSyncFrom } from '../io/atomic';
import { lockDirectory } from './output-lock';
import { DEFAULT_HELD_OUT_FRACTION, HELD_OUT_SELECTION, HeldOutSelector, heldOutPerShard } from './held-out';
import type { TokenizeResult } from './tokenize-worker';
import { MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, PrepareSettings, ShardEntry, sha256File } from './manifest';

export { MANIFEST_FORMAT, MANIFEST_VERSION, ManifestError, readManifest } from './manifest';
export type { Manifest, PrepareSettings, ShardEntry } from './manifest';

export interface PrepareOptions {
  inputs: string[];
  tokenizerPath: string;
  outputDir: string;
  /** one document per line instead of blank-line-separated documents */
  docsPerLine?: boolean;
  /** lines longer than this many characters are split (default 100,000) */
  maxLineChars?: number;
  /** locale of the sentence splitter (default fr) */
  locale?: string;
  /** raw text per shard, in millions of characters (default 256) */
  shardSizeMB?: number;
  /** tokenizer worker threads (default: all cores) */
  threads?: number;
  /** SentencePiece backend (default: $CAMEMBERTA_SENTENCEPIECE, else native when built, else wasm);
   *  both give the same ids on all of fr-roman19 (docs/DATA.md) */
  tokenizerBackend?: SentencePieceBackend;
  /** share of the documents held out for evaluation, chosen from their index in the input
   *  stream (default 0.01; 0: none). Recorded in the manifest only: it changes no shard. */
  heldOutFraction?: number;
  /** delete shards made with other settings instead of refusing */
  overwrite?: boolean;
  onWarning?: (message: string) => void;
  /** one line on the set-up, once the workers are up (the tokenizer backend and thread count) */
  onInfo?: (message: string) => void;
  onBytes?: (bytes: number) => void;
  onTokens?: (tokens: number) => void;
  /** called when a shard file is complete (tests use it to interrupt at a known point) */
  onShardWritten?: (index: number) => void;
}

export class PrepareError extends Error {}

const SETTINGS_FILE = 'prepare-settings.json';
const UNIT_CHARS = 1 << 20;

function writeJsonAtomically(path: string, value: unknown): void {
  writeFileAtomicSyncFrom(path, JSON.stringify(value, null, 2) + '\n');
}

export async function prepare(options: PrepareOptions): Promise<Manifest> {
  const heldOutFraction = options.heldOutFraction ?? DEFAULT_HELD_OUT_FRACTION;
  const heldOutSelector = new HeldOutSelector(heldOutFraction);
  const files = listCorpusFiles(options.inputs);
  const tokenizer = await loadTokenizer(options.tokenizerPath, { backend: options.tokenizerBackend });
  const tokenWidth = tokenWidthFor(tokenizer.vocabSize);
  const settings: PrepareSettings = {
    inputs: files.map((path) => {
      const stat = statSync(path);
      return { path, bytes: stat.size, mtimeMs: Math.floor(stat.mtimeMs) };
    }),
    docsPerLine: Boolean(options.docsPerLine),
    maxLineChars: options.maxLineChars ?? 100_000,
    locale: options.locale ?? 'fr',
    shardChars: Math.max(1, Math.round((options.shardSizeMB ?? 256) * 1e6)),
    tokenizerSha256: tokenizer.sp.sha256,
  };

  const out = options.outputDir;
  mkdirSync(out, { recursive: true });
  // Everything below deletes or replaces files in `out`: one run at a time.
  const lock = lockDirectory(out, 'prepare');
  try {
    return await prepareLocked(options, { files, tokenizer, tokenWidth, settings, heldOutFraction, heldOutSelector, out });
  } finally {
    lock.release();
  }
}

/** What prepare settles before it takes the output directory's lock. */
interface PrepareRun {
  files: string[];
  tokenizer: LoadedTokenizer;
  tokenWidth: 2 | 4;
  settings: PrepareSettings;
  heldOutFraction: number;
  heldOutSelector: HeldOutSelector;
  out: string;
}

async function prepareLocked(options: PrepareOptions, run: PrepareRun): Promise<Manifest> {
  const { files, tokenizer, tokenWidth, settings, heldOutFraction, heldOutSelector, out } = run;
  const settingsPath = join(out, SETTINGS_FILE);
  if (existsSync(settingsPath)) {
    const previous = readFileSync(settingsPath, 'utf8');
    if (previous !== JSON.stringify(settings, null, 2) + '\n') {
      if (!options.overwrite) {
        throw new PrepareError(`${out} holds shards prepared with other inputs, tokenizer or settings (${SETTINGS_FILE} differs); use another --output or --overwrite`);
      }
      for (const name of readdirSync(out)) {
        if (/^shard-\d+\.bin$/.test(name) || isUnfinishedShardFile(name) || name === 'manifest.json') rmSync(join(out, name));
      }
    }
  }
  // A shard left half-written by a killed run is rewritten from scratch.
  for (const name of readdirSync(out)) if (isUnfinishedShardFile(name)) rmSync(join(out, name));
  writeJsonAtomically(settingsPath, settings);
  const manifestPath = join(out, 'manifest.json');
  if (existsSync(manifestPath)) rmSync(manifestPath);
  mkdirSync(join(out, 'tokenizer'), { recursive: true });
  tokenizer.saveForTransformers(join(out, 'tokenizer'));

  const stats = emptyCorpusStats();
  const pool = await TokenizePool.start(options.tokenizerPath, { threads: options.threads, locale: settings.locale, backend: options.tokenizerBackend });
  options.onInfo?.(`tokenizer: ${pool.backendDescription}, ${pool.size} worker thread${pool.size === 1 ? '' : 's'}`);
  type Pending = { kind: 'unit'; shard: number; firstDocument: number; result: Promise<TokenizeResult> } | { kind: 'finish'; shard: number };
  const pending: Pending[] = [];
  const headers: (ShardHeader | undefined)[] = [];
  const reused = new Set<number>();
  let writer: ShardWriter | undefined;

  const drainOne = async (): Promise<void> => {
    const item = pending.shift()!;
    if (item.kind === 'finish') {
      headers[item.shard] = writer!.finish();
      writer = undefined;
      options.onShardWritten?.(item.shard);
      return;
    }
    const result = await item.result;
    // Items drain in order, so the previous shard's 'finish' has closed its writer by now.
    writer ??= new ShardWriter(join(out, shardFileName(item.shard)), tokenWidth, item.firstDocument);
    writer.append(result.tokens, result.sentenceLengths, result.documentSentences);
    options.onTokens?.(result.tokens.length);
  };

  let shard = 0;
  let shardChars = 0;
  let shardExists = existsSync(join(out, shardFileName(0)));
  let unit: string[][] = [];
  let unitChars = 0;
  const flushUnit = async (): Promise<void> => {
    if (!unit.length) return;
    pending.push({ kind: 'unit', shard, firstDocument: firstDocumentOfShard, result: pool.tokenize(unit) });
    unit = [];
    unitChars = 0;
    while (pending.length > 2 * pool.size) await drainOne();
  };
  let firstDocumentOfShard = 0;
  // A shard already on disk from an interrupted run is kept as it is; otherwise its last unit is
  // sent and the shard is finished once every unit before it has been written.
  const closeShard = async (): Promise<void> => {
    if (shardExists) {
      reused.add(shard);
    } else {
      await flushUnit();
      pending.push({ kind: 'finish', shard });
    }
    shard += 1;
  };

  try {
    for await (const document of readCorpus(files, stats, {
      docsPerLine: settings.docsPerLine,
      maxLineChars: settings.maxLineChars,
      onWarning: options.onWarning,
      onBytes: options.onBytes,
    })) {
      if (shardChars === 0) firstDocumentOfShard = document.index;
      heldOutSelector.consider(document.index);
      let chars = 0;
      for (const line of document.lines) chars += line.length;
      shardChars += chars;
      if (!shardExists) {
        unit.push(document.lines);
        unitChars += chars;
        if (unitChars >= UNIT_CHARS) await flushUnit();
      }
      if (shardChars >= settings.shardChars) {
        await closeShard();
        shardChars = 0;
        shardExists = existsSync(join(out, shardFileName(shard)));
      }
    }
    if (shardChars > 0) await closeShard();
    while (pending.length) await drainOne();
  } catch (error) {
    writer?.abandon();
    throw error;
  } finally {
    await pool.close();
  }

  // Shards of an earlier run with more shards (impossible with identical settings) would be stale.
  const shardCount = shard;
  const entries: ShardEntry[] = [];
  for (let index = 0; index < shardCount; index++) {
    const path = join(out, shardFileName(index));
    const header = headers[index] ?? readShardHeader(path);
    if (header.tokenWidth !== tokenWidth) throw new PrepareError(`${path} has ${header.tokenWidth}-byte tokens, expected ${tokenWidth}`);
    entries.push({
      file: shardFileName(index),
      documents: header.documents,
      sentences: header.sentences,
      tokens: header.tokens,
      firstDocument: header.firstDocument,
      bytes: statSync(path).size,
      sha256: sha256File(path),
      heldOutDocuments: [],
    });
  }
  const documentsInShards = entries.reduce((sum, entry) => sum + entry.documents, 0);
  if (documentsInShards !== stats.documents) {
    throw new PrepareError(`the shards in ${out} hold ${documentsInShards} documents but the corpus has ${stats.documents}; rerun with --overwrite`);
  }
  const heldOut = heldOutSelector.finish(stats.documents);
  heldOutPerShard(heldOut, entries).forEach((local, index) => { entries[index].heldOutDocuments = local; });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    tokenizer: {
      file: 'tokenizer/spm.model',
      sha256: tokenizer.sp.sha256,
      pieces: tokenizer.sp.pieceCount,
      vocabSize: tokenizer.vocabSize,
      tokenWidth,
      specialTokens: { ...tokenizer.special.ids },
      specialTokenStrings: { ...tokenizer.special.strings },
    },
    settings,
    heldOut: { fraction: heldOutFraction, selection: HELD_OUT_SELECTION },
    counts: {
      ...stats,
      sentences: entries.reduce((sum, entry) => sum + entry.sentences, 0),
      tokens: entries.reduce((sum, entry) => sum + entry.tokens, 0),
      shards: entries.length,
      shardsReused: reused.size,
      heldOutDocuments: heldOut.length,
    },
    shards: entries,
  };
  writeJsonAtomically(manifestPath, manifest);
  return manifest;
}
