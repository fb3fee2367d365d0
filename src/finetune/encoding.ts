// From words and texts to model inputs: sub-word ids with the special tokens of the model's layout,
// the position of each word's first sub-word (where token-level labels and parser states live),
// and padded batches as tensors.
import { Tensor, tensor } from '../tensor';
import type { LoadedTokenizer } from '../tokenizer/index';

export interface EncodedRow {
  ids: number[];
  /** Segment of each id (0: text, 1: text_pair), for models with type_vocab_size > 1. */
  typeIds?: number[];
}

export interface EncodedWords extends EncodedRow {
  /** Position in ids of each word's first sub-word; -1 for words cut off by maxLength. */
  firstPiece: number[];
}

/** The special-token layout around one or two segments: DeBERTa's [CLS] a [SEP] b [SEP], RoBERTa's <s> a </s></s> b </s>. */
export type SpecialLayout = 'deberta' | 'roberta';

/**
 * [CLS] w1 w2 ... [SEP], each word encoded alone (as transformers does with is_split_into_words),
 * at most maxLength ids: words that no longer fit are left out (firstPiece -1). A word that encodes
 * to nothing (characters the normalizer drops) becomes [UNK], so every word has a position.
 */
export function encodeWords(tokenizer: LoadedTokenizer, words: readonly string[], maxLength: number): EncodedWords {
  const { cls, sep, unk } = tokenizer.special.ids;
  const { ids: flat, lengths } = tokenizer.sp.encodeMany(words);
  const ids = [cls];
  const firstPiece: number[] = [];
  let offset = 0;
  let full = false;
  for (let w = 0; w < words.length; w++) {
    const pieces = lengths[w] > 0 ? Array.from(flat.subarray(offset, offset + lengths[w])) : [unk];
    offset += lengths[w];
    if (full || ids.length + pieces.length + 1 > maxLength) {
      full = true;
      firstPiece.push(-1);
      continue;
    }
    firstPiece.push(ids.length);
    ids.push(...pieces);
  }
  ids.push(sep);
  return { ids, firstPiece };
}

/** One text or a pair with the model's special tokens, truncated longest-first to maxLength ids. */
export function encodeText(tokenizer: LoadedTokenizer, text: string, pair: string | undefined, maxLength: number, layout: SpecialLayout): EncodedRow & { truncated: boolean } {
  const { cls, sep } = tokenizer.special.ids;
  const a = Array.from(tokenizer.sp.encode(text));
  const b = pair === undefined ? null : Array.from(tokenizer.sp.encode(pair));
  const specials = b === null ? 2 : layout === 'roberta' ? 4 : 3;
  let truncated = false;
  while (a.length + (b?.length ?? 0) + specials > maxLength && (a.length > 0 || (b?.length ?? 0) > 0)) {
    truncated = true;
    if (b !== null && b.length >= a.length) b.pop();
    else a.pop();
  }
  if (b === null) return { ids: [cls, ...a, sep], typeIds: Array(a.length + 2).fill(0), truncated };
  const first = [cls, ...a, sep];
  const second = layout === 'roberta' ? [sep, ...b, sep] : [...b, sep];
  return { ids: [...first, ...second], typeIds: [...Array(first.length).fill(0), ...Array(second.length).fill(1)], truncated };
}

export interface ModelBatch {
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor<'int64'>;
  tokenTypeIds?: Tensor<'int64'>;
}

/** Pads rows to the longest with padId; token types only when the model has them. */
export function collate(rows: readonly EncodedRow[], padId: number, device: string, withTypes: boolean): ModelBatch {
  const L = Math.max(...rows.map((row) => row.ids.length));
  const B = rows.length;
  const ids = new BigInt64Array(B * L).fill(BigInt(padId));
  const mask = new BigInt64Array(B * L);
  const types = new BigInt64Array(B * L);
  rows.forEach((row, b) => {
    row.ids.forEach((id, i) => {
      ids[b * L + i] = BigInt(id);
      mask[b * L + i] = 1n;
      if (row.typeIds) types[b * L + i] = BigInt(row.typeIds[i]);
    });
  });
  const make = (data: BigInt64Array) => {
    const t = tensor(data, { shape: [B, L] }) as Tensor<'int64'>;
    return device === 'cpu' ? t : t.to<'int64'>({ device });
  };
  return { inputIds: make(ids), attentionMask: make(mask), tokenTypeIds: withTypes ? make(types) : undefined };
}

/** An int64 [B, W] tensor of per-word values (padding fill), on the device. */
export function wordMatrix(rows: readonly (readonly number[])[], fill: number, device: string): Tensor<'int64'> {
  const W = Math.max(1, ...rows.map((row) => row.length));
  const data = new BigInt64Array(rows.length * W).fill(BigInt(fill));
  rows.forEach((row, b) => row.forEach((value, w) => { data[b * W + w] = BigInt(value); }));
  const t = tensor(data, { shape: [rows.length, W] }) as Tensor<'int64'>;
  return device === 'cpu' ? t : t.to<'int64'>({ device });
}
