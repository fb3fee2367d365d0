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
import { emptyCorpusStats, listCorpusFiles, readCorpus } from '../corpus/read';
import { ShardHeader, ShardWriter, isUnfinishedShardFile, readShardHeader, shardBytesFor, shardFileName, tokenWidthFor } from './shard';
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
// Each shard's size, sha256 and first document, recorded as soon as the shard is written: a rerun
// reuses a shard only when the file still matches (a truncated or edited shard is written again).
const JOURNAL_FILE = 'prepare-shards.json';

interface JournalEntry {
  bytes: number;
  sha256: string;
  firstDocument: number;
}

function readJournal(path: string): Record<string, JournalEntry> {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed : {};
  } catch {
    // None yet, or unreadable: no shard on disk counts as finished.
    return {};
  }
}
const UNIT_CHARS = 1 << 20;

function writeJsonAtomically(path: string, value: unknown): void {
  writeFileAtomicSyncFrom(path, JSON.stringify(value, null, 2) + '\n');
}

/** Why the shard at `path` is not the finished file recorded in the journal, or undefined. */
function reuseProblem(path: string, recorded: JournalEntry | undefined, firstDocument: number): string | undefined {
  if (!recorded) return `no record of it being finished in ${JOURNAL_FILE}`;
  let header: ShardHeader;
  try {
    header = readShardHeader(path);
  } catch (error) {
    return (error as Error).message;
  }
  const size = statSync(path).size;
  if (size !== recorded.bytes || size !== shardBytesFor(header)) return `${size} bytes, ${recorded.bytes} when it was written`;
  if (header.firstDocument !== firstDocument || recorded.firstDocument !== firstDocument) return `it starts at document ${header.firstDocument}, the corpus says ${firstDocument}`;
  if (sha256File(path) !== recorded.sha256) return 'its sha256 changed since it was written';
  return undefined;
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
        if (/^shard-\d+\.bin$/.test(name) || isUnfinishedShardFile(name) || name === 'manifest.json' || name === JOURNAL_FILE) rmSync(join(out, name));
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
  if (options.threads !== undefined && options.threads > pool.size) {
    options.onWarning?.(`${options.threads} threads asked for, ${pool.size} used: this machine has ${pool.size} cores`);
  }
  const journalPath = join(out, JOURNAL_FILE);
  const journal = readJournal(journalPath);
  // Recorded before the shard appears under its name: a run killed in between leaves a record
  // without a file, never a file without a record.
  const recordShard = (index: number, completePath: string, header: ShardHeader): void => {
    journal[shardFileName(index)] = { bytes: statSync(completePath).size, sha256: sha256File(completePath), firstDocument: header.firstDocument };
    writeJsonAtomically(journalPath, journal);
  };
  // A shard on disk is reused only when it is the file this run would write: recorded when it was
  // finished, same size and sha256, and a header starting at the document the text says.
  const reusable = (index: number, firstDocument: number): boolean => {
    const file = shardFileName(index);
    const path = join(out, file);
    if (!existsSync(path)) return false;
    const problem = reuseProblem(path, journal[file], firstDocument);
    if (problem === undefined) return true;
    options.onWarning?.(`${path}: ${problem}; writing it again`);
    rmSync(path);
    delete journal[file];
    return false;
  };
  type Pending = { kind: 'unit'; shard: number; firstDocument: number; result: Promise<TokenizeResult> } | { kind: 'finish'; shard: number };
  const pending: Pending[] = [];
  const headers: (ShardHeader | undefined)[] = [];
  const reused = new Set<number>();
  let writer: ShardWriter | undefined;

  const drainOne = async (): Promise<void> => {
    const item = pending.shift()!;
    if (item.kind === 'finish') {
      headers[item.shard] = writer!.finish((completePath, header) => recordShard(item.shard, completePath, header));
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
  let shardExists = reusable(0, 0);
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
  // A shard already on disk from an interrupted run (and verified) is kept; otherwise its last unit is
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
        shardExists = reusable(shard, document.index + 1);
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
      bytes: journal[shardFileName(index)].bytes,
      sha256: journal[shardFileName(index)].sha256,
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
