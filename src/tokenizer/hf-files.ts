// Writes the files transformers loads a DeBERTa-V2/V3 tokenizer from:
//   spm.model                the SentencePiece model (what DebertaV2Tokenizer's vocab_file names)
//   tokenizer_config.json    tokenizer_class DebertaV2Tokenizer, special tokens, added [MASK]
//   special_tokens_map.json  the special-token strings
//   tokenizer.json           the same model for the `tokenizers` library, so that transformers 5
//                            loads it without the protobuf package, and transformers 4's fast
//                            tokenizer keeps the model's own normalization (its precompiled charsmap)
import { mkdirSync, renameSync, writeFileSync } from 'fs';
import { join } from 'path';
import { PieceType, SentencePieceModel } from './spm-model';
import { SpecialTokens } from './special-tokens';
import { WORD_BOUNDARY } from './sentencepiece';

export const HF_TOKENIZER_FILES = ['spm.model', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.json'] as const;

interface AddedToken {
  id: number;
  content: string;
  single_word: false;
  lstrip: false;
  rstrip: false;
  normalized: false;
  special: true;
}

function addedToken(id: number, content: string): AddedToken {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function specialAddedTokens(model: SentencePieceModel, special: SpecialTokens): AddedToken[] {
  const byId = new Map<number, string>();
  model.pieces.forEach((piece, id) => {
    if (piece.type === PieceType.Control || piece.type === PieceType.Unknown) byId.set(id, piece.piece);
  });
  for (const role of ['pad', 'cls', 'sep', 'unk', 'mask'] as const) byId.set(special.ids[role], special.strings[role]);
  for (const token of special.added) byId.set(token.id, token.content);
  return [...byId.entries()].sort((a, b) => a[0] - b[0]).map(([id, content]) => addedToken(id, content));
}

export function tokenizerConfigJson(model: SentencePieceModel, special: SpecialTokens, maxLength = 512): Record<string, unknown> {
  const decoder: Record<string, Omit<AddedToken, 'id'>> = {};
  for (const { id, ...rest } of specialAddedTokens(model, special)) decoder[String(id)] = rest;
  return {
    tokenizer_class: 'DebertaV2Tokenizer',
    vocab_type: 'spm',
    do_lower_case: false,
    split_by_punct: false,
    add_prefix_space: true,
    model_max_length: maxLength,
    ...specialTokensMapJson(special),
    added_tokens_decoder: decoder,
  };
}

export function specialTokensMapJson(special: SpecialTokens): Record<string, string> {
  return {
    bos_token: special.strings.cls,
    eos_token: special.strings.sep,
    cls_token: special.strings.cls,
    sep_token: special.strings.sep,
    unk_token: special.strings.unk,
    pad_token: special.strings.pad,
    mask_token: special.strings.mask,
  };
}

/** tokenizer.json in the layout of transformers' DebertaV2Converter (Unigram, Metaspace, [CLS] A [SEP] B [SEP]). */
export function tokenizersJson(model: SentencePieceModel, special: SpecialTokens): Record<string, unknown> {
  const normalizers: Record<string, unknown>[] = [{ type: 'Strip', strip_left: true, strip_right: true }];
  if (model.normalizer.precompiledCharsmap.length > 0) {
    normalizers.push({ type: 'Precompiled', precompiled_charsmap: Buffer.from(model.normalizer.precompiledCharsmap).toString('base64') });
  }
  normalizers.push({ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
  const metaspace = { type: 'Metaspace', replacement: WORD_BOUNDARY, prepend_scheme: 'always', split: true };
  const cls = special.strings.cls;
  const sep = special.strings.sep;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specialAddedTokens(model, special),
    normalizer: { type: 'Sequence', normalizers },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [special.ids.cls], tokens: [cls] },
        [sep]: { id: sep, ids: [special.ids.sep], tokens: [sep] },
      },
    },
    decoder: metaspace,
    model: {
      type: 'Unigram',
      unk_id: special.ids.unk,
      vocab: model.pieces.map((piece) => [piece.piece, piece.score]),
      byte_fallback: model.trainer.byteFallback,
    },
  };
}

function writeAtomically(path: string, data: string | Uint8Array): void {
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, data);
  renameSync(temporary, path);
}

/** Writes the four HF tokenizer files into dir (created if needed). */
export function saveHfTokenizer(dir: string, model: SentencePieceModel, special: SpecialTokens, maxLength = 512): void {
  mkdirSync(dir, { recursive: true });
  writeAtomically(join(dir, 'spm.model'), model.bytes);
  writeAtomically(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(model, special, maxLength), null, 2) + '\n');
  writeAtomically(join(dir, 'special_tokens_map.json'), JSON.stringify(specialTokensMapJson(special), null, 2) + '\n');
  writeAtomically(join(dir, 'tokenizer.json'), JSON.stringify(tokenizersJson(model, special)) + '\n');
}
