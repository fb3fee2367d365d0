// A SentencePiece tokenizer over sentencepiece-js (SentencePiece compiled to WebAssembly), with the
// special-token ids of the DeBERTa-V3 / CamemBERTa layouts read from the model (never hard-coded).
//
// Speed: one call into the WebAssembly encoder costs about 10 us before any text is processed, and
// the encoder runs about 3x slower than native SentencePiece. `encodeMany` therefore encodes each
// distinct space-separated word once, alone, and keeps its ids in a bounded cache. For a unigram model
// that splits on whitespace this gives the ids of encoding the whole text: no piece spans a '▁'
// boundary, so the Viterbi lattice decomposes at every word start. The one exception is a word with
// two best segmentations of exactly equal score (same pieces, other order; see mayTie), where the
// winner depends on float rounding: encoding the word alone makes the choice depend on the word only,
// so the output is deterministic whatever the threads or the cache state. Checked against Python
// sentencepiece in test/tokenizer.test.ts. Models without those properties take the per-text path.
import { SentencePieceProcessor } from 'sentencepiece-js';
import { PieceType, SentencePieceModel, readSentencePieceModel } from './spm-model';

export const WORD_BOUNDARY = '\u2581';

const DEFAULT_CACHE_ENTRIES = 400_000;

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

/**
 * Whether a word may have two segmentations made of the same pieces in another order, which score
 * the same: the winner then depends on floating-point rounding of everything before it in the text
 * (and differs between the WebAssembly and native builds). That takes a repeat: a square uu with
 * |u| >= 2 ("abab") or a cube ccc ("III", "000"). The tests use it to explain such differences.
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
