// The tokenizer layer: a SentencePiece model (native libsentencepiece or sentencepiece-js) plus its special-token ids.
import { existsSync, readFileSync } from 'fs';
import { SentencePieceBackend, SentencePieceTokenizer } from './sentencepiece';
import { ModelConfigTokenFields, SpecialTokens, checkAgainstModelConfig, readHfTokenizerFiles, resolveSpecialTokens } from './special-tokens';
import { saveHfTokenizer } from './hf-files';

export { BACKEND_ENV, SentencePieceTokenizer, WORD_BOUNDARY, concatInt32 } from './sentencepiece';
export type { EncodedBatch, SentencePieceBackend } from './sentencepiece';
export { SpecialTokenError, checkAgainstModelConfig, resolveSpecialTokens, readHfTokenizerFiles } from './special-tokens';
export type { SpecialTokenIds, SpecialTokens, ModelConfigTokenFields } from './special-tokens';
export { readSentencePieceModel, parseSentencePieceModel, PieceType } from './spm-model';
export type { SentencePieceModel } from './spm-model';
export { saveHfTokenizer, HF_TOKENIZER_FILES } from './hf-files';

export interface LoadedTokenizer {
  sp: SentencePieceTokenizer;
  special: SpecialTokens;
  /** ids the model's embedding table must cover (pieces + added tokens such as an appended [MASK]) */
  vocabSize: number;
  /** Writes spm.model, tokenizer_config.json, special_tokens_map.json, tokenizer.json into dir. */
  saveForTransformers(dir: string, maxLength?: number): void;
}

/**
 * Loads a SentencePiece model; special tokens come from the model and from tokenizer_config.json /
 * special_tokens_map.json beside it. With `modelConfig` (a model's config.json object or its path),
 * a mismatch between the two (vocab_size too small, another pad id) is an error.
 */
export async function loadTokenizer(
  modelPath: string,
  options: { modelConfig?: ModelConfigTokenFields | string; maxCacheEntries?: number; backend?: SentencePieceBackend } = {},
): Promise<LoadedTokenizer> {
  const sp = await SentencePieceTokenizer.load(modelPath, { maxCacheEntries: options.maxCacheEntries, backend: options.backend });
  const special = resolveSpecialTokens(sp.model, readHfTokenizerFiles(modelPath));
  if (options.modelConfig !== undefined) {
    let config = options.modelConfig;
    let name = 'model config';
    if (typeof config === 'string') {
      name = config;
      if (!existsSync(config)) throw new Error(`model config ${config} does not exist`);
      config = JSON.parse(readFileSync(config, 'utf8')) as ModelConfigTokenFields;
    }
    checkAgainstModelConfig(special, config, name);
  }
  return {
    sp,
    special,
    vocabSize: special.vocabSize,
    saveForTransformers: (dir: string, maxLength = 512) => saveHfTokenizer(dir, sp.model, special, maxLength),
  };
}
