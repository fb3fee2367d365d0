// Normalization rules for `tokenizer.js train`.
//
// transformers 5's DebertaV2Tokenizer does not use the model's own normalization: it rebuilds a
// `tokenizers` pipeline that maps '\t', '\n', '\r' and runs of two or more whitespace characters to one
// space, applies Unicode NFC and strips the right end. A model trained with SentencePiece's default
// `nmt_nfkc` rule tokenizes text that NFKC changes differently there (in French prose: the
// no-break space before ':;?!' and '…'). The `nfc` rule below makes SentencePiece do what that
// pipeline does, so our ids, Python sentencepiece and transformers agree.
export type NormalizationRule = 'nfc' | 'nmt_nfkc' | 'nfkc' | 'identity';

export const NORMALIZATION_RULES: readonly NormalizationRule[] = ['nfc', 'nmt_nfkc', 'nfkc', 'identity'];

function hex(text: string): string {
  return Array.from(text, (ch) => ch.codePointAt(0)!.toString(16).toUpperCase()).join(' ');
}

/**
 * The `nfc` rule as a SentencePiece normalization TSV ("source code points<TAB>target code points",
 * hex): every canonically decomposable character's NFD form composes back to it, and tab, line feed
 * and carriage return become a space. Built from the Unicode tables of the running Node (ICU).
 */
export function nfcRuleTsv(): string {
  const lines: string[] = ['9\t20', 'A\t20', 'D\t20'];
  for (let codePoint = 0xa0; codePoint <= 0x10ffff; codePoint++) {
    if (codePoint >= 0xd800 && codePoint <= 0xdfff) continue;
    const ch = String.fromCodePoint(codePoint);
    const decomposed = ch.normalize('NFD');
    if (decomposed !== ch && decomposed.normalize('NFC') === ch) lines.push(`${hex(decomposed)}\t${hex(ch)}`);
  }
  return lines.join('\n') + '\n';
}
