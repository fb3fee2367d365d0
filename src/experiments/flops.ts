// Parameter counts of exported models and the compute estimate of a pretraining run.
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensorsHeader } from '../io/safetensors';

export interface ModelSize {
  parameters: number;
  /** Parameters outside the embedding tables: the ones every token multiplies through. */
  nonEmbedding: number;
  layers: number;
  hidden: number;
  vocab: number;
}

const EMBEDDING = /(word_embeddings|position_embeddings|token_type_embeddings|rel_embeddings)\.weight$/;

export function modelSize(dir: string): ModelSize {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const header = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
  let parameters = 0;
  let embeddings = 0;
  for (const [name, entry] of header.entries) {
    const count = entry.shape.reduce((a, b) => a * b, 1);
    parameters += count;
    if (EMBEDDING.test(name)) embeddings += count;
  }
  const extra = path.join(dir, 'rtd_head.safetensors');
  if (fs.existsSync(extra)) for (const entry of readSafetensorsHeader(extra).entries.values()) parameters += entry.shape.reduce((a, b) => a * b, 1);
  return { parameters, nonEmbedding: parameters - embeddings, layers: config.num_hidden_layers, hidden: config.hidden_size, vocab: config.vocab_size };
}

/**
 * Training FLOPs, Kaplan et al.'s 6 x N per token (forward 2N, backward 4N) over the
 * non-embedding parameters plus 6 x layers x seq x hidden per token for attention, for every model
 * the objective trains; the masked-LM decoder (a vocab x hidden product, tied to the embeddings)
 * runs only on the masked positions. An estimate: DeBERTa's disentangled attention costs more.
 */
export function trainingFlops(models: readonly ModelSize[], tokens: number, seqLength: number, maskedShare: number, decoderModel?: ModelSize): number {
  let perToken = 0;
  for (const m of models) perToken += 6 * (m.nonEmbedding + m.layers * seqLength * m.hidden);
  if (decoderModel) perToken += 6 * maskedShare * decoderModel.vocab * decoderModel.hidden;
  return perToken * tokens;
}
