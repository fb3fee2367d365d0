// A SentencePiece tokenizer over sentencepiece-js (SentencePiece compiled to WebAssembly), with the
// special-token ids of the DeBERTa-V3 / CamemBERTa layouts read from the model (never hard-coded).
//
// Speed: one call into the WebAssembly encoder costs about 10 us before any text is processed, and
// the encoder runs about 3x slower than native SentencePiece. `encodeMany` therefore encodes each
// distinct space-separated word once (a bounded cache), batching the words it has not seen into a
// few calls. For a unigram model that splits on whitespace this gives exactly the ids of encoding the
// whole text: no piece spans a '▁' boundary, so the Viterbi lattice decomposes at every word start
// (checked id for id against Python sentencepiece in test/tokenizer.test.ts). Models without those
// properties take the plain per-text path.
import { SentencePieceProcessor } from 'sentencepiece-js';
import { PieceType, SentencePieceModel, readSentencePieceModel } from './spm-model';

export const WORD_BOUNDARY = '\u2581';

// Joined batches of unseen words stay short: the WebAssembly build gives different ids from native
// SentencePiece on inputs of tens of kilobytes (seen at 72 KB, not at 39 KB), native does not.
const MAX_JOINED_BATCH_CHARS = 4096;
const DEFAULT_CACHE_ENTRIES = 400_000;

// A word is batched with others only if its normalization cannot add or remove a word boundary:
// no whitespace, separators, control or format characters, and NFKC-stable (NFKC is the widest
// normalization a SentencePiece model applies; e.g. U+00A8 becomes " \u0308").
const UNSAFE_IN_BATCH = /[\s\p{Z}\p{Cc}\p{Cf}]/u;

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

export interface EncodedBatch {
  /** all ids of all texts, one after the other */
  ids: Int32Array;
  /** number of ids of each text */
  lengths: Int32Array;
}

export class SentencePieceTokenizer {
  readonly pieceCount: number;
  readonly sha256: string;
  private readonly wordStart: Uint8Array;
  private readonly pieceIds = new Map<string, number>();
  private readonly cache = new Map<string, Int32Array>();
  private readonly wordCacheUsable: boolean;

  private constructor(
    readonly path: string,
    readonly model: SentencePieceModel,
    private readonly wasm: WasmModule,
    private readonly processor: WasmProcessor,
    private readonly maxCacheEntries: number,
  ) {
    this.pieceCount = model.pieces.length;
    this.sha256 = model.sha256;
    this.wordStart = new Uint8Array(this.pieceCount);
    let boundaryInsidePiece = false;
    model.pieces.forEach((piece, id) => {
      if (!this.pieceIds.has(piece.piece)) this.pieceIds.set(piece.piece, id);
      if (piece.piece.startsWith(WORD_BOUNDARY)) this.wordStart[id] = 1;
      if (piece.piece.indexOf(WORD_BOUNDARY, 1) >= 0) boundaryInsidePiece = true;
      if (piece.type === PieceType.UserDefined && /\s/.test(piece.piece)) boundaryInsidePiece = true;
    });
    const { trainer, normalizer } = model;
    this.wordCacheUsable = trainer.modelType === 'unigram' && trainer.splitByWhitespace &&
      !trainer.treatWhitespaceAsSuffix && normalizer.addDummyPrefix && normalizer.removeExtraWhitespaces &&
      normalizer.escapeWhitespaces && !boundaryInsidePiece;
  }

  static async load(path: string, options: { maxCacheEntries?: number } = {}): Promise<SentencePieceTokenizer> {
    const model = readSentencePieceModel(path);
    const js = new SentencePieceProcessor();
    await js.load(path);
    const handle = js as unknown as { sentencepiece: WasmModule; processor: WasmProcessor };
    return new SentencePieceTokenizer(path, model, handle.sentencepiece, handle.processor,
      options.maxCacheEntries ?? DEFAULT_CACHE_ENTRIES);
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

  /** Encodes many texts; the same ids as `encode` on each, faster (see the note at the top). */
  encodeMany(texts: readonly string[]): EncodedBatch {
    const lengths = new Int32Array(texts.length);
    if (!this.wordCacheUsable) {
      const parts = texts.map((text) => this.encode(text));
      parts.forEach((part, i) => { lengths[i] = part.length; });
      return { ids: concatInt32(parts), lengths };
    }
    if (this.cache.size > this.maxCacheEntries) this.cache.clear();
    const wordsOfText = texts.map((text) => text.split(' '));
    this.fillCache(wordsOfText);
    let total = 0;
    for (const words of wordsOfText) {
      for (const word of words) if (word) total += this.cache.get(word)!.length;
    }
    const ids = new Int32Array(total);
    let offset = 0;
    wordsOfText.forEach((words, i) => {
      const start = offset;
      for (const word of words) {
        if (!word) continue;
        const wordIds = this.cache.get(word)!;
        ids.set(wordIds, offset);
        offset += wordIds.length;
      }
      lengths[i] = offset - start;
    });
    return { ids, lengths };
  }

  private fillCache(wordsOfText: string[][]): void {
    let batch: string[] = [];
    let batchChars = 0;
    const pending = new Set<string>();
    for (const words of wordsOfText) {
      for (const word of words) {
        if (!word || this.cache.has(word) || pending.has(word)) continue;
        if (UNSAFE_IN_BATCH.test(word) || word.normalize('NFKC') !== word) {
          this.cache.set(word, this.encode(word));
          continue;
        }
        pending.add(word);
        batch.push(word);
        batchChars += word.length + 1;
        if (batchChars >= MAX_JOINED_BATCH_CHARS) {
          this.encodeWordBatch(batch);
          batch = [];
          batchChars = 0;
        }
      }
    }
    if (batch.length) this.encodeWordBatch(batch);
  }

  private encodeWordBatch(words: string[]): void {
    const ids = this.encode(words.join(' '));
    const starts: number[] = [];
    for (let i = 0; i < ids.length; i++) if (this.wordStart[ids[i]]) starts.push(i);
    if (starts.length !== words.length || starts[0] !== 0) {
      // A word did not begin with a word-start piece (e.g. an unknown first character in a model
      // without a bare '▁' piece): encode these words one by one instead.
      for (const word of words) this.cache.set(word, this.encode(word));
      return;
    }
    for (let k = 0; k < words.length; k++) {
      const end = k + 1 < starts.length ? starts[k + 1] : ids.length;
      this.cache.set(words[k], ids.slice(starts[k], end));
    }
  }
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
