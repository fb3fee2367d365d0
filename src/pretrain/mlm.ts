// Masked-language-model pretraining (BERT/RoBERTa): the paper's "CamemBERT 30%" baseline, run by the
// same trainer as ELECTRA. Masking has a fixed number of slots per row, like ELECTRA's, so that the
// MLM head runs on the chosen positions only and no step needs the masked count on the host.
import { Tensor, Generator, arange, rand, noGrad, stack, tidy } from '../tensor';
import { DebertaV2ForMaskedLM } from '../models/deberta/modeling';
import { RobertaForMaskedLM } from '../models/roberta/modeling';
import {
  Masking, MaskingOptions, SpecialTokenIds, defaultMaxPredictions, corruptSlots, gatherPositions, slotCrossEntropy,
} from './electra';

/**
 * BERT's masking: min(N, max(1, round(n_real * maskProb))) positions per row drawn WITHOUT
 * replacement among real tokens other than [CLS]/[SEP]/[MASK]; of those, maskTokenProb become
 * [MASK], randomTokenProb a random token of [0, randomVocabSize), the rest keep their token.
 */
export function bertMask(inputIds: Tensor<'int64'>, attentionMask: Tensor, special: SpecialTokenIds, options: MaskingOptions,
  randomVocabSize: number, generator?: Generator): Masking {
  const [, L] = inputIds.shape;
  const slots = Math.min(L, options.maxPredictions ?? defaultMaxPredictions(options.maskProb, L));
  const candidates = attentionMask.ne(0)
    .logicalAnd(inputIds.ne(special.cls)).logicalAnd(inputIds.ne(special.sep)).logicalAnd(inputIds.ne(special.mask));
  // Uniform scores on candidates, -1 elsewhere: the top `slots` are a uniform sample without replacement.
  const scores = rand(inputIds.shape, { generator, device: inputIds.device }).maskedFill(candidates.logicalNot(), -1);
  const { indices } = scores.topk(slots, 1, true, true);
  const real = attentionMask.ne(0).sum(1, false, 'float32');
  const count = real.mul(options.maskProb).round().clamp(1, slots).minimum(candidates.sum(1, false, 'float32'));
  const slotIndex = arange(slots, undefined, 1, { dtype: 'float32', device: inputIds.device });
  const weights = slotIndex.unsqueeze(0).lt(count.unsqueeze(1)).to('float32');
  const positions = indices.mul(weights.to('int64')) as Tensor<'int64'>;
  const originalIds = inputIds.gather(1, positions) as Tensor<'int64'>;
  const corrupted = corruptSlots(inputIds, positions, originalIds, weights, special, options, randomVocabSize, generator);
  return { inputIds: corrupted, positions, originalIds, weights };
}

/** The order of maskedLanguageModelLoss's statistics, summed per micro-batch. */
export const MLM_STATISTICS = ['loss', 'correct', 'slots'] as const;

/** Mean cross-entropy over the used slots, the head run on those rows only. */
export function maskedLanguageModelLoss(model: DebertaV2ForMaskedLM | RobertaForMaskedLM,
  batch: { attentionMask: Tensor; tokenTypeIds?: Tensor<'int64'> }, masking: Masking): { loss: Tensor; logits: Tensor; statistics: Tensor<'float32'> } {
  const inputs = { inputIds: masking.inputIds, attentionMask: batch.attentionMask, tokenTypeIds: batch.tokenTypeIds };
  const hidden = model instanceof DebertaV2ForMaskedLM
    ? model.deberta.forward(inputs).lastHiddenState
    : model.roberta.forward(inputs).lastHiddenState;
  const logits = model.head(gatherPositions(hidden, masking.positions));
  const loss = slotCrossEntropy(logits, masking.originalIds, masking.weights);
  const statistics = noGrad(() => tidy(() => stack([
    loss.detach().float(),
    // float32 argmax: the same index as on bf16 logits, and faster (src/pretrain/electra.ts).
    logits.detach().float().argmax(-1).eq(masking.originalIds).to('float32').mul(masking.weights).sum(),
    masking.weights.sum(),
  ]) as Tensor<'float32'>));
  return { loss, logits, statistics };
}

export function mlmMetrics(sums: readonly number[], microBatches: number): Record<string, number> {
  return { loss: sums[0] / microBatches, mlm_accuracy: sums[2] > 0 ? sums[1] / sums[2] : 0 };
}
