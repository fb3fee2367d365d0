// Special-token ids, read from the SentencePiece model and the HF tokenizer files beside it.
//
// Two layouts are in use and neither is hard-coded here:
//   DeBERTa-V3 (microsoft/deberta-v3-base): pieces 0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK]; [MASK] is not
//     a piece: transformers appends it as an added token at id len(spm).
//   CamemBERTa: 0 <unk> (also the padding id), 1 [CLS], 2 [SEP], [MASK] at 32000.
import { existsSync, readFileSync } from 'fs';
import { dirname, join } from 'path';
import { PieceType, SentencePieceModel } from './spm-model';

export interface SpecialTokenIds {
  pad: number;
  cls: number;
  sep: number;
  unk: number;
  mask: number;
}

export interface SpecialTokenStrings {
  pad: string;
  cls: string;
  sep: string;
  unk: string;
  mask: string;
}

export interface SpecialTokens {
  ids: SpecialTokenIds;
  strings: SpecialTokenStrings;
  /** Tokens with ids >= the number of pieces (transformers' added tokens), e.g. an appended [MASK]. */
  added: { id: number; content: string }[];
  /** Size of the embedding table the ids need: pieces plus added tokens. */
  vocabSize: number;
}

/** The HF files that may sit beside spm.model (tokenizer_config.json, special_tokens_map.json). */
export interface HfTokenizerFiles {
  tokenizerConfig?: Record<string, unknown>;
  specialTokensMap?: Record<string, unknown>;
}

export class SpecialTokenError extends Error {}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new SpecialTokenError(`cannot parse ${path}: ${(error as Error).message}`);
  }
}

export function readHfTokenizerFiles(modelPath: string): HfTokenizerFiles {
  const dir = dirname(modelPath);
  return {
    tokenizerConfig: readJson(join(dir, 'tokenizer_config.json')),
    specialTokensMap: readJson(join(dir, 'special_tokens_map.json')),
  };
}

/**
 * Resolves the five special tokens. Strings come from special_tokens_map.json / tokenizer_config.json
 * when present, else from the model's trainer spec ([CLS]/[SEP] pieces if the model has them, else its
 * bos/eos pieces). Ids come from the model's pieces, else from tokenizer_config.json's
 * added_tokens_decoder; a [MASK] found in neither is appended at len(pieces), as transformers does.
 * Any disagreement between the files and the model is an error naming both.
 */
export function resolveSpecialTokens(model: SentencePieceModel, files: HfTokenizerFiles = {}): SpecialTokens {
  const pieceIds = new Map<string, number>();
  model.pieces.forEach((piece, id) => { if (!pieceIds.has(piece.piece)) pieceIds.set(piece.piece, id); });
  const { trainer } = model;
  const pieceAt = (id: number): string | undefined => (id >= 0 ? model.pieces[id]?.piece : undefined);

  const declared = (key: string): string | undefined =>
    tokenContent(files.specialTokensMap?.[key]) ?? tokenContent(files.tokenizerConfig?.[key]);
  const defaults: SpecialTokenStrings = {
    unk: pieceAt(trainer.unkId) ?? '[UNK]',
    pad: pieceAt(trainer.padId) ?? (pieceIds.has('[PAD]') ? '[PAD]' : pieceAt(trainer.unkId) ?? '[PAD]'),
    cls: pieceIds.has('[CLS]') ? '[CLS]' : pieceAt(trainer.bosId) ?? '[CLS]',
    sep: pieceIds.has('[SEP]') ? '[SEP]' : pieceAt(trainer.eosId) ?? '[SEP]',
    mask: '[MASK]',
  };
  const strings: SpecialTokenStrings = {
    unk: declared('unk_token') ?? defaults.unk,
    pad: declared('pad_token') ?? defaults.pad,
    cls: declared('cls_token') ?? defaults.cls,
    sep: declared('sep_token') ?? defaults.sep,
    mask: declared('mask_token') ?? defaults.mask,
  };

  const addedById = new Map<number, string>();
  const decoder = files.tokenizerConfig?.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [id, value] of Object.entries(decoder as Record<string, unknown>)) {
      const content = tokenContent(value);
      if (content !== undefined) addedById.set(Number(id), content);
    }
  }
  const addedIdOf = (content: string): number | undefined => {
    for (const [id, text] of addedById) if (text === content) return id;
    return undefined;
  };

  const added: { id: number; content: string }[] = [];
  const resolve = (role: keyof SpecialTokenStrings): number => {
    const content = strings[role];
    const pieceId = pieceIds.get(content);
    const addedId = addedIdOf(content);
    if (pieceId !== undefined) {
      if (addedId !== undefined && addedId !== pieceId) {
        throw new SpecialTokenError(`${role} token ${content}: the SentencePiece model has it at id ${pieceId}, tokenizer_config.json says ${addedId}`);
      }
      const type = model.pieces[pieceId].type;
      if (role !== 'unk' && type === PieceType.Normal) {
        throw new SpecialTokenError(`${role} token ${content} is an ordinary piece (id ${pieceId}) in the SentencePiece model: text could produce it`);
      }
      return pieceId;
    }
    if (addedId !== undefined) {
      if (addedId < model.pieces.length) {
        throw new SpecialTokenError(`${role} token ${content}: tokenizer_config.json puts it at id ${addedId}, where the SentencePiece model has piece ${pieceAt(addedId)}`);
      }
      if (!added.some((token) => token.id === addedId)) added.push({ id: addedId, content });
      return addedId;
    }
    if (role === 'mask') {
      const id = model.pieces.length + added.length;
      added.push({ id, content });
      return id;
    }
    throw new SpecialTokenError(`${role} token ${content} is neither a piece of the SentencePiece model nor an added token in tokenizer_config.json`);
  };
  const ids: SpecialTokenIds = {
    unk: resolve('unk'),
    pad: resolve('pad'),
    cls: resolve('cls'),
    sep: resolve('sep'),
    mask: resolve('mask'),
  };
  if (ids.unk !== trainer.unkId) {
    throw new SpecialTokenError(`unk token ${strings.unk} is at id ${ids.unk} but the SentencePiece model's unk_id is ${trainer.unkId}`);
  }
  for (const [id, content] of addedById) {
    if (id >= model.pieces.length && !added.some((token) => token.id === id)) added.push({ id, content });
  }
  added.sort((a, b) => a.id - b.id);
  const vocabSize = Math.max(model.pieces.length, ...added.map((token) => token.id + 1));
  return { ids, strings, added, vocabSize };
}

/** The fields of a model's config.json that must agree with the tokenizer. */
export interface ModelConfigTokenFields {
  vocab_size?: number;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | null;
}

/** Throws a SpecialTokenError when a model config cannot be used with these special tokens. */
export function checkAgainstModelConfig(special: SpecialTokens, config: ModelConfigTokenFields, configName = 'config.json'): void {
  const problems: string[] = [];
  if (typeof config.vocab_size === 'number' && config.vocab_size < special.vocabSize) {
    problems.push(`vocab_size ${config.vocab_size} is smaller than the tokenizer's ${special.vocabSize} ids (pieces + added tokens)`);
  }
  if (typeof config.pad_token_id === 'number' && config.pad_token_id !== special.ids.pad) {
    problems.push(`pad_token_id ${config.pad_token_id} but the tokenizer's pad token ${special.strings.pad} is id ${special.ids.pad}`);
  }
  if (typeof config.bos_token_id === 'number' && config.bos_token_id !== special.ids.cls) {
    problems.push(`bos_token_id ${config.bos_token_id} but the tokenizer's ${special.strings.cls} is id ${special.ids.cls}`);
  }
  if (typeof config.eos_token_id === 'number' && config.eos_token_id !== special.ids.sep) {
    problems.push(`eos_token_id ${config.eos_token_id} but the tokenizer's ${special.strings.sep} is id ${special.ids.sep}`);
  }
  if (problems.length) throw new SpecialTokenError(`${configName} does not match the tokenizer: ${problems.join('; ')}`);
}
