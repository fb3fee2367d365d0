// A SentencePiece tokenizer with two backends, the same ids from either, and the special-token ids
// of the DeBERTa-V3 / CamemBERTa layouts read from the model (never hard-coded):
// - native: the reference C++ library (libsentencepiece, Debian's libsentencepiece-dev) through the
//   small addon build/Release/camemberta_sentencepiece.node (native-sentencepiece/), built when the
//   library is installed. It does not load libtorch, so tokenizer worker threads load it cheaply.
// - wasm: sentencepiece-js (SentencePiece compiled to WebAssembly), always available.
// The default is native when its addon loads, else wasm; force one with the `backend` option or
// CAMEMBERTA_SENTENCEPIECE=native|wasm (forcing native fails loudly when the addon is missing).
//
// Speed: `encodeMany` encodes each distinct space-separated word once, alone, and keeps its ids in a
// bounded cache (in the addon for native, where it makes encoding 3x faster than whole texts; in JS
// for wasm, where one call costs about 10 us before any text is processed). For a unigram model that
// splits on whitespace this gives the ids of encoding the whole text: no piece spans a '▁' boundary,
// so the Viterbi lattice decomposes at every word start. What couples the words is float32 rounding of
// the running path score, which decides exact ties (two segmentations of the same pieces in another
// order, see mayTie) and near ones. The native backend runs SentencePiece 0.2.x's Viterbi itself and
// carries that score across the cached words, re-running a word whose best path could change at that
// score: its ids are Python sentencepiece 0.2.2's, every line, whole or word by word (see
// native-sentencepiece/sentencepiece.cc). The wasm backend is SentencePiece 0.1.97, which breaks some
// ties otherwise, and encodes each word alone: deterministic whatever the threads or the cache state,
// but not Python's ids on tie lines. Checked against Python sentencepiece in test/tokenizer.test.ts.
// Models without those properties take the per-text path.
import { existsSync, readFileSync } from 'fs';
import { join } from 'path';
import { SentencePieceProcessor } from 'sentencepiece-js';
import { packageRoot } from '../package-root';
import { PieceType, SentencePieceModel, readSentencePieceModel } from './spm-model';

export const WORD_BOUNDARY = '\u2581';

const DEFAULT_CACHE_ENTRIES = 400_000;

export type SentencePieceBackend = 'native' | 'wasm';
export const BACKEND_ENV = 'CAMEMBERTA_SENTENCEPIECE';

export interface EncodedBatch {
  /** all ids of all texts, one after the other */
  ids: Int32Array;
  /** number of ids of each text */
  lengths: Int32Array;
}

export interface SentencePieceLoadOptions {
  /** words kept in the encodeMany cache before it is cleared (default 400,000) */
  maxCacheEntries?: number;
  /** which encoder; default: $CAMEMBERTA_SENTENCEPIECE, else native when its addon loads, else wasm */
  backend?: SentencePieceBackend;
}

/** What both backends do: SentencePiece's own Encode and Decode, on one text or many. */
interface Encoder {
  readonly description: string;
  encode(text: string): Int32Array;
  /** with byWord, through the word cache (only for models where that gives the same ids) */
  encodeMany(texts: readonly string[], byWord: boolean): EncodedBatch;
  decode(ids: ArrayLike<number>): string;
}

// ---- native: camemberta_sentencepiece.node ----

type NativeHandle = object;
interface NativeUnigramOptions {
  /** ModelProto piece type of each id */
  pieceTypes: Uint8Array;
  byteFallback: boolean;
}
/** Counters of encodeMany with the word cache since load (native backend). */
export interface NativeEncoderStats {
  /** words looked up in the cache */
  words: number;
  /** words re-run through the Viterbi from the line's running score (exact or near ties) */
  viterbiWords: number;
  cacheEntries: number;
}
interface NativeSentencePiece {
  load(modelBytes: Uint8Array, maxCacheEntries: number, unigram?: NativeUnigramOptions): NativeHandle;
  encodeBatch(handle: NativeHandle, texts: readonly string[], byWord: boolean): EncodedBatch;
  decode(handle: NativeHandle, ids: Int32Array | number[]): string;
  pieceSize(handle: NativeHandle): number;
  stats(handle: NativeHandle): NativeEncoderStats;
  version: string;
}

let nativeAddon: { addon?: NativeSentencePiece; error?: string } | undefined;

/** The native addon, or why it is not available (loaded once per thread). */
export function loadNativeSentencePiece(): { addon?: NativeSentencePiece; error?: string } {
  if (nativeAddon) return nativeAddon;
  const file = join(packageRoot(), 'build', 'Release', 'camemberta_sentencepiece.node');
  if (!existsSync(file)) {
    nativeAddon = { error: `${file} is not built (it needs libsentencepiece-dev; then npm run build:native)` };
  } else {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      nativeAddon = { addon: require(file) as NativeSentencePiece };
    } catch (error) {
      nativeAddon = { error: `${file} does not load: ${(error as Error).message}` };
    }
  }
  return nativeAddon;
}

class NativeEncoder implements Encoder {
  readonly description: string;
  private readonly handle: NativeHandle;

  constructor(private readonly addon: NativeSentencePiece, model: SentencePieceModel, modelBytes: Uint8Array, maxCacheEntries: number) {
    // A unigram model gets SentencePiece 0.2.x's Viterbi (the addon's own, over libsentencepiece's
    // normalization): the ids of Python's sentencepiece 0.2.2 and HF tokenizers, ties included.
    const unigram = model.trainer.modelType === 'unigram'
      ? { pieceTypes: Uint8Array.from(model.pieces, (piece) => piece.type), byteFallback: model.trainer.byteFallback }
      : undefined;
    this.handle = addon.load(modelBytes, maxCacheEntries, unigram);
    this.description = `native libsentencepiece ${addon.version}${unigram ? ' + SentencePiece 0.2 Viterbi' : ''}`;
  }

  stats(): NativeEncoderStats {
    return this.addon.stats(this.handle);
  }

  encode(text: string): Int32Array {
    return this.addon.encodeBatch(this.handle, [text], false).ids;
  }

  encodeMany(texts: readonly string[], byWord: boolean): EncodedBatch {
    return this.addon.encodeBatch(this.handle, texts, byWord);
  }

  decode(ids: ArrayLike<number>): string {
    return this.addon.decode(this.handle, ids instanceof Int32Array ? ids : Array.from(ids));
  }
}

// ---- wasm: sentencepiece-js ----

interface WasmVector {
  size(): number;
  get(index: number): number;
  delete(): void;
}
interface WasmDeletable {
  delete(): void;
}
interface WasmModule {
  StringView: new (text: string) => { getView(): WasmDeletable } & WasmDeletable;
  vecFromJSArray(ids: number[]): WasmDeletable;
}
interface WasmProcessor {
  EncodeAsIds(view: WasmDeletable): WasmVector;
  DecodeIds(ids: WasmDeletable): string;
}

class WasmEncoder implements Encoder {
  readonly description = 'sentencepiece-js (WebAssembly)';
  private readonly cache = new Map<string, Int32Array>();

  private constructor(private readonly wasm: WasmModule, private readonly processor: WasmProcessor, private readonly maxCacheEntries: number) {}

  static async load(path: string, maxCacheEntries: number): Promise<WasmEncoder> {
    const js = new SentencePieceProcessor();
    await js.load(path);
    const handle = js as unknown as { sentencepiece: WasmModule; processor: WasmProcessor };
    return new WasmEncoder(handle.sentencepiece, handle.processor, maxCacheEntries);
  }

  encode(text: string): Int32Array {
    const stringView = new this.wasm.StringView(text);
    const view = stringView.getView();
    const vector = this.processor.EncodeAsIds(view);
    try {
      const size = vector.size();
      const ids = new Int32Array(size);
      for (let i = 0; i < size; i++) ids[i] = vector.get(i);
      return ids;
    } finally {
      vector.delete();
      view.delete();
      stringView.delete();
    }
  }

  decode(ids: ArrayLike<number>): string {
    const vector = this.wasm.vecFromJSArray(Array.from(ids));
    try {
      return this.processor.DecodeIds(vector);
    } finally {
      vector.delete();
    }
  }

  encodeMany(texts: readonly string[], byWord: boolean): EncodedBatch {
    const lengths = new Int32Array(texts.length);
    if (!byWord) {
      const parts = texts.map((text) => this.encode(text));
      parts.forEach((part, i) => { lengths[i] = part.length; });
      return { ids: concatInt32(parts), lengths };
    }
    if (this.cache.size > this.maxCacheEntries) this.cache.clear();
    const parts: Int32Array[] = [];
    texts.forEach((text, i) => {
      const wordIds: Int32Array[] = [];
      for (const word of text.split(' ')) {
        if (!word) continue;
        let ids = this.cache.get(word);
        if (ids === undefined) {
          ids = this.encode(word);
          this.cache.set(word, ids);
        }
        wordIds.push(ids);
      }
      const ids = concatInt32(wordIds);
      lengths[i] = ids.length;
      parts.push(ids);
    });
    return { ids: concatInt32(parts), lengths };
  }
}

function requestedBackend(option: SentencePieceBackend | undefined): SentencePieceBackend | 'auto' {
  const value = option ?? process.env[BACKEND_ENV] ?? 'auto';
  if (value !== 'native' && value !== 'wasm' && value !== 'auto') {
    throw new Error(`${option === undefined ? `$${BACKEND_ENV}` : 'backend'} is '${value}': expected native, wasm or auto`);
  }
  return value;
}

export class SentencePieceTokenizer {
  readonly pieceCount: number;
  readonly sha256: string;
  private readonly pieceIds = new Map<string, number>();
  private readonly wordCacheUsable: boolean;

  private constructor(
    readonly path: string,
    readonly model: SentencePieceModel,
    /** the encoder in use */
    readonly backend: SentencePieceBackend,
    private readonly encoder: Encoder,
  ) {
    this.pieceCount = model.pieces.length;
    this.sha256 = model.sha256;
    let boundaryInsidePiece = false;
    model.pieces.forEach((piece, id) => {
      if (!this.pieceIds.has(piece.piece)) this.pieceIds.set(piece.piece, id);
      if (piece.piece.indexOf(WORD_BOUNDARY, 1) >= 0) boundaryInsidePiece = true;
      if (piece.type === PieceType.UserDefined && /\s/.test(piece.piece)) boundaryInsidePiece = true;
    });
    const { trainer, normalizer } = model;
    this.wordCacheUsable = trainer.modelType === 'unigram' && trainer.splitByWhitespace &&
      !trainer.treatWhitespaceAsSuffix && normalizer.addDummyPrefix && normalizer.removeExtraWhitespaces &&
      normalizer.escapeWhitespaces && !boundaryInsidePiece;
  }

  static async load(path: string, options: SentencePieceLoadOptions = {}): Promise<SentencePieceTokenizer> {
    const model = readSentencePieceModel(path);
    const maxCacheEntries = options.maxCacheEntries ?? DEFAULT_CACHE_ENTRIES;
    const requested = requestedBackend(options.backend);
    if (requested !== 'wasm') {
      const { addon, error } = loadNativeSentencePiece();
      if (addon) return new SentencePieceTokenizer(path, model, 'native', new NativeEncoder(addon, model, readFileSync(path), maxCacheEntries));
      if (requested === 'native') throw new Error(`the native SentencePiece backend was requested but ${error}`);
    }
    return new SentencePieceTokenizer(path, model, 'wasm', await WasmEncoder.load(path, maxCacheEntries));
  }

  /** One line for logs: the encoder in use and whether encodeMany uses the word cache. */
  get backendDescription(): string {
    return `${this.encoder.description}${this.wordCacheUsable ? ', word cache' : ''}`;
  }

  /** Whether encodeMany can use its word cache (a whitespace-splitting unigram model). */
  get usesWordCache(): boolean {
    return this.wordCacheUsable;
  }

  pieceToId(piece: string): number | undefined {
    return this.pieceIds.get(piece);
  }

  idToPiece(id: number): string | undefined {
    return this.model.pieces[id]?.piece;
  }

  /** Encodes one text with a single call into SentencePiece (no cache). */
  encode(text: string): Int32Array {
    return this.encoder.encode(text);
  }

  decode(ids: ArrayLike<number>): string {
    return this.encoder.decode(ids);
  }

  /** Native backend: counters of encodeMany's word cache (how many words were ties); else undefined. */
  get nativeStats(): NativeEncoderStats | undefined {
    return this.encoder instanceof NativeEncoder ? this.encoder.stats() : undefined;
  }

  /** Encodes many texts; the same ids as `encode` on each, faster (see the note at the top). */
  encodeMany(texts: readonly string[]): EncodedBatch {
    return this.encoder.encodeMany(texts, this.wordCacheUsable);
  }
}

/**
 * Whether a word may have two segmentations made of the same pieces in another order, which score
 * the same: the winner then depends on floating-point rounding of everything before it in the text,
 * and on the SentencePiece version (0.1.97, the WebAssembly backend, and Python's 0.2.2, which the
 * native backend reproduces, break some such ties differently). That takes a repeat: a square uu with |u| >= 2 ("abab") or a cube ccc ("III",
 * "000"). The tests use it to explain such differences.
 */
export function mayTie(word: string): boolean {
  const n = word.length;
  for (let i = 0; i + 2 < n; i++) {
    if (word.charCodeAt(i) === word.charCodeAt(i + 1) && word.charCodeAt(i) === word.charCodeAt(i + 2)) return true;
  }
  for (let period = 2; 2 * period <= n; period++) {
    let run = 0;
    for (let i = 0; i + period < n; i++) {
      run = word.charCodeAt(i) === word.charCodeAt(i + period) ? run + 1 : 0;
      if (run >= period) return true;
    }
  }
  return false;
}

export function concatInt32(parts: readonly Int32Array[]): Int32Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Int32Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
