// ELECTRA replaced-token detection (Clark et al. 2020) with DeBERTa-V3's gradient-disentangled
// embedding sharing (He et al. 2021), as CamemBERTa trained it (NVIDIA's TF2 ELECTRA recipe;
// ../shared/SPEC.md section 4). Read top to bottom: masking, the pair of models and how they share
// the word embeddings, then one forward pass: generator MLM on the masked slots, sampling
// from the generator's softmax, the discriminator on the corrupted sequence, and the combined loss.
//
// Shapes: B batch, L sequence length, N prediction slots per row, V vocabulary rows, E embedding size.
// Nothing here reads a value back to the host: every count a log line needs is returned as a
// tensor (`statistics`) for the trainer to accumulate and read only on logging steps.
import {
  Tensor, Generator, arange, rand, randint, where, crossEntropy, embedding, noGrad, stack, zeros, IndexDType, tidy, searchsorted,
} from '../tensor';
import { Module, Parameter } from '../nn';
import { DebertaV2Config } from '../models/deberta/config';
import { DebertaV2ForMaskedLM } from '../models/deberta/modeling';
import { DebertaV2ForReplacedTokenDetection, replacedTokenDetectionLoss } from '../models/deberta/rtd';
import { ModelInitOptions } from '../models/pretrained-module';

export type EmbeddingSharing = 'gdes' | 'es' | 'none';

export interface SpecialTokenIds {
  mask: number;
  cls: number;
  sep: number;
  pad: number;
}

export interface MaskingOptions {
  /** Fraction of a row's tokens to predict (0.15). */
  maskProb: number;
  /** Of the chosen slots: replaced by [MASK] (ELECTRA 0.85, BERT 0.8) ... */
  maskTokenProb: number;
  /** ... by a random token (ELECTRA 0, BERT 0.1); the rest keep their token. */
  randomTokenProb: number;
  /** Slots per row; default int((maskProb + 0.005) * L), NVIDIA's max_predictions_per_seq (19 at 128, 79 at 512). */
  maxPredictions?: number;
}

export interface Masking {
  /** [B, L] the model input: [MASK] (or a random token) written at the chosen positions. */
  inputIds: Tensor<'int64'>;
  /** [B, N] chosen positions; 0 in unused slots. */
  positions: Tensor<'int64'>;
  /** [B, N] the original token at each position. */
  originalIds: Tensor<'int64'>;
  /** [B, N] 1 for slots that count, 0 for unused ones. */
  weights: Tensor<'float32'>;
}

export function defaultMaxPredictions(maskProb: number, seqLength: number): number {
  return Math.max(1, Math.trunc((maskProb + 0.005) * seqLength));
}

/** Real tokens that may be chosen: not padding, [CLS], [SEP] or [MASK]. */
function candidateMask(inputIds: Tensor<'int64'>, attentionMask: Tensor, special: SpecialTokenIds): Tensor<'bool'> {
  return attentionMask.ne(0)
    .logicalAnd(inputIds.ne(special.cls)).logicalAnd(inputIds.ne(special.sep)).logicalAnd(inputIds.ne(special.mask));
}

/** num_to_predict = max(1, min(N, round(n_real * maskProb))) per row, as NVIDIA (n_real counts [CLS]/[SEP]). */
function slotWeights(attentionMask: Tensor, candidates: Tensor<'bool'>, maskProb: number, slots: number): Tensor<'float32'> {
  const real = attentionMask.ne(0).sum(1, false, 'float32');
  const wanted = real.mul(maskProb).round().clamp(1, slots);
  // A row with no candidate at all (e.g. "[CLS] [SEP]") predicts nothing rather than [CLS].
  const available = candidates.sum(1, false, 'float32');
  const count = wanted.minimum(available);
  const slotIndex = arange(slots, undefined, 1, { dtype: 'float32', device: attentionMask.device });
  return slotIndex.unsqueeze(0).lt(count.unsqueeze(1)).to('float32');
}

/**
 * Index of the first slot holding the same position, [B, N]: when a position is drawn by several
 * slots, what is written there comes from its first slot, so the result never depends on the
 * order in which a scatter kernel writes duplicates.
 */
function firstSlotOfPosition(positions: Tensor<'int64'>): Tensor<'int64'> {
  return positions.unsqueeze(2).eq(positions.unsqueeze(1)).to('float32').argmax(-1);
}

/** Writes values[b, n] at positions[b, n] of ids; duplicates take their first slot's value. */
export function writeAtPositions(ids: Tensor<'int64'>, positions: Tensor<'int64'>, values: Tensor<'int64'>): Tensor<'int64'> {
  return ids.scatter(1, positions, values.gather(1, firstSlotOfPosition(positions)));
}

/**
 * The generator's input from `originalIds` at chosen slots: [MASK] with maskTokenProb, a random
 * token in [0, randomVocabSize) with randomTokenProb, else the token itself. Unused slots write
 * the original back (a no-op).
 */
export function corruptSlots(inputIds: Tensor<'int64'>, positions: Tensor<'int64'>, originalIds: Tensor<'int64'>, weights: Tensor,
  special: SpecialTokenIds, options: MaskingOptions, randomVocabSize: number, generator?: Generator): Tensor<'int64'> {
  const choice = rand(positions.shape, { generator, device: positions.device });
  const used = weights.gt(0);
  let values = where(used.logicalAnd(choice.lt(options.maskTokenProb)), special.mask, originalIds);
  if (options.randomTokenProb > 0) {
    if (!(Number.isInteger(randomVocabSize) && randomVocabSize > 0)) {
      throw new RangeError(`randomTokenProb ${options.randomTokenProb} needs randomVocabSize, the ids random tokens are drawn from (got ${randomVocabSize})`);
    }
    const random = randint(0, randomVocabSize, positions.shape, { generator, device: positions.device });
    const pickRandom = used.logicalAnd(choice.ge(options.maskTokenProb)).logicalAnd(choice.lt(options.maskTokenProb + options.randomTokenProb));
    values = where(pickRandom, random, values);
  }
  return writeAtPositions(inputIds, positions, values);
}

/**
 * ELECTRA's dynamic masking (NVIDIA pretrain_utils.mask): N slots per row, num_to_predict of them
 * used, positions drawn uniformly WITH replacement among the candidates, 85% of the used slots
 * become [MASK] and 15% keep their token (maskTokenProb / randomTokenProb configurable).
 */
export function electraMask(inputIds: Tensor<'int64'>, attentionMask: Tensor, special: SpecialTokenIds, options: MaskingOptions,
  generator?: Generator, randomVocabSize = 0): Masking {
  const [, L] = inputIds.shape;
  const slots = options.maxPredictions ?? defaultMaxPredictions(options.maskProb, L);
  const candidates = candidateMask(inputIds, attentionMask, special);
  const weights = slotWeights(attentionMask, candidates, options.maskProb, slots);
  // multinomial needs a positive row sum: rows without candidates draw position 0, then get weight 0.
  const noCandidate = candidates.any(1, true).logicalNot();
  const firstColumn = zeros(inputIds.shape, { dtype: 'bool', device: inputIds.device });
  firstColumn.select(1, 0).fill_(1);
  const probabilities = candidates.logicalOr(noCandidate.logicalAnd(firstColumn)).to('float32');
  const drawn = probabilities.multinomial(slots, true, generator);
  const positions = drawn.mul(weights.to('int64')) as Tensor<'int64'>;
  const originalIds = inputIds.gather(1, positions) as Tensor<'int64'>;
  const corrupted = corruptSlots(inputIds, positions, originalIds, weights, special, options, randomVocabSize, generator);
  return { inputIds: corrupted, positions, originalIds, weights };
}

/**
 * One token per row of logits [.., V], drawn from softmax(logits / T): the distribution ELECTRA's
 * Gumbel-max sampling (argmax(logits / T + g), g Gumbel noise) draws from, here by inverting the
 * cumulative distribution, with one uniform per row instead of one per vocabulary entry (V draws
 * per slot from the serial CPU generator, then two logs of each, were about 8% of a CPU step).
 * w = exp((logits - max) / T) summed up along V (ATen accumulates in double and rounds each
 * partial sum to float32, so each token's probability is exact to within 2^-24 of the total);
 * u is uniform in [0, total) and the token is the first whose partial sum exceeds u. No gradient.
 */
export function sampleTokens(logits: Tensor, temperature: number, generator?: Generator): Tensor<'int64'> {
  return noGrad(() => {
    // In place, in a scope of its own: the [B, N, V] partial sums are the largest temporary of a step.
    return tidy(() => {
      const V = logits.size(-1);
      const scores = logits.detach();
      const max = scores.amax(-1, true);
      // Float32 logits are the generator's output, which backward still reads: a new tensor then;
      // under autocast the float32 copy is already new, and is shifted in place.
      const cumulative = scores.dtype === 'float32' ? scores.sub(max) : scores.float().sub_(max);
      if (temperature !== 1) cumulative.div_(temperature);
      cumulative.exp_().cumsum_(-1);
      const total = cumulative.narrow(-1, V - 1, 1);
      const u = rand(total.shape, { generator, device: logits.device }).mul_(total);
      // u * total can round up to total (a chance of about 2^-24): the last token then.
      return searchsorted(cumulative, u, { right: true }).squeeze(-1).clamp_(null, V - 1);
    });
  });
}

/** Weighted mean over prediction slots of the cross-entropy: sum(CE * w) / (sum(w) + 1e-6). */
export function slotCrossEntropy(logits: Tensor, targets: Tensor<IndexDType>, weights: Tensor): Tensor {
  const V = logits.size(-1);
  const perSlot = crossEntropy(logits.float().reshape(-1, V), targets.reshape(-1) as Tensor<IndexDType>, { reduction: 'none' }).viewAs(weights);
  return perSlot.mul(weights).sum().div(weights.sum().add(1e-6));
}

/** Rows of hidden [B, L, H] at positions [B, N] -> [B, N, H]. */
export function gatherPositions(hidden: Tensor, positions: Tensor<'int64'>): Tensor {
  const [B, N] = positions.shape;
  return hidden.gather(1, positions.unsqueeze(-1).expand(B, N, hidden.size(-1)));
}

// ---- The pair of models --------------------------------------------------------------------------

/** The order of ElectraOutput.statistics: sums over a micro-batch, accumulated by the trainer. */
export const ELECTRA_STATISTICS = [
  'loss', 'gen_loss', 'disc_loss',
  'gen_correct', 'gen_slots', 'disc_correct', 'real_tokens', 'true_positive', 'predicted_positive', 'replaced',
] as const;

export interface ElectraOutput {
  /** genLoss + discWeight * discLoss, 0-dim. */
  loss: Tensor;
  genLoss: Tensor;
  discLoss: Tensor;
  /** [B, N, V] generator logits at the slots. */
  genLogits: Tensor;
  /** [B, N] the generator's samples. */
  sampledIds: Tensor<'int64'>;
  /** [B, L] the discriminator's input. */
  discInputIds: Tensor<'int64'>;
  /** [B, L] replaced-token labels. */
  replaced: Tensor<'bool'>;
  /** [B, L] replaced-token logits (float32). */
  discLogits: Tensor;
  /** [ELECTRA_STATISTICS.length] float32, detached. */
  statistics: Tensor<'float32'>;
}

export interface ElectraBatch {
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor;
  tokenTypeIds?: Tensor<'int64'>;
}

export interface ElectraForwardOptions {
  discWeight: number;
  /** Sampling temperature T: tokens are drawn from softmax(logits / T) (1). */
  temperature?: number;
  /** [B, N] tokens to write instead of sampling (tests). */
  sampledIds?: Tensor<'int64'>;
  /** The sampling's random stream. */
  generator?: Generator;
}

/**
 * Generator (DebertaV2ForMaskedLM) and discriminator (DebertaV2ForReplacedTokenDetection) trained
 * together. Word embeddings, by `sharing`:
 * - 'gdes': the discriminator reads stop_gradient(E_G)[ids] + E_delta[ids]; E_G is trained by the
 *   generator loss alone, the zero-initialised E_delta by the discriminator loss alone.
 * - 'es': one table, E_G, trained by both losses (ELECTRA's sharing).
 * - 'none': two separate tables.
 * Under 'gdes' and 'es' the discriminator's word_embeddings.weight is the generator's Parameter
 * (listed once, as generator.deberta.embeddings.word_embeddings.weight).
 */
export class ElectraModel extends Module {
  generator: DebertaV2ForMaskedLM;
  discriminator: DebertaV2ForReplacedTokenDetection;
  embedding_delta: Parameter | null;

  constructor(generatorConfig: DebertaV2Config, discriminatorConfig: DebertaV2Config, readonly sharing: EmbeddingSharing, options: ModelInitOptions = {}) {
    super();
    if (sharing !== 'none') {
      if (generatorConfig.vocab_size !== discriminatorConfig.vocab_size || generatorConfig.embedding_size !== discriminatorConfig.embedding_size) {
        throw new Error(`embedding sharing '${sharing}' needs the same vocab_size and embedding_size in generator and discriminator `
          + `(got ${generatorConfig.vocab_size}x${generatorConfig.embedding_size} and ${discriminatorConfig.vocab_size}x${discriminatorConfig.embedding_size})`);
      }
    }
    this.generator = new DebertaV2ForMaskedLM(generatorConfig, options);
    this.discriminator = new DebertaV2ForReplacedTokenDetection(discriminatorConfig, options);
    this.embedding_delta = null;
    if (sharing !== 'none') {
      const own = this.discriminator.deberta.embeddings.word_embeddings;
      own.weight.dispose();
      own.weight = this.generator.deberta.embeddings.word_embeddings.weight;
    }
    if (sharing === 'gdes') {
      this.embedding_delta = new Parameter(zeros([discriminatorConfig.vocab_size, discriminatorConfig.embedding_size]));
    }
  }

  /** E_G: the generator's word embedding table. */
  get generatorEmbeddings(): Parameter {
    return this.generator.deberta.embeddings.word_embeddings.weight;
  }

  /** The discriminator's effective word embedding table (E_G + E_delta under GDES): what its export holds. */
  discriminatorEmbeddingTable(): Tensor {
    return noGrad(() => (this.embedding_delta
      ? this.generatorEmbeddings.add(this.embedding_delta)
      : this.discriminator.deberta.embeddings.word_embeddings.weight.clone()));
  }

  forward(batch: ElectraBatch, masking: Masking, options: ElectraForwardOptions): ElectraOutput {
    const { attentionMask, tokenTypeIds } = batch;
    // Generator: MLM on the masked slots only.
    const { lastHiddenState } = this.generator.deberta.forward({ inputIds: masking.inputIds, attentionMask, tokenTypeIds });
    const genLogits = this.generator.head(gatherPositions(lastHiddenState, masking.positions));
    const genLoss = slotCrossEntropy(genLogits, masking.originalIds, masking.weights);

    // Corrupted sequence: samples written at the used slots; labels where they differ.
    const sampledIds = options.sampledIds ?? sampleTokens(genLogits, options.temperature ?? 1, options.generator);
    const used = masking.weights.gt(0);
    const discInputIds = writeAtPositions(batch.inputIds, masking.positions, where(used, sampledIds, masking.originalIds));
    const replaced = discInputIds.ne(batch.inputIds);

    // The delta's pad row gets no gradient, as the word-embedding table's own pad row.
    const padIndex = this.discriminator.deberta.embeddings.word_embeddings.paddingIdx ?? -1;
    const wordEmbeddings = this.embedding_delta
      ? embedding(this.generatorEmbeddings.detach(), discInputIds).add(embedding(this.embedding_delta, discInputIds, padIndex))
      : undefined;
    const hidden = this.discriminator.deberta.forward({ inputIds: discInputIds, attentionMask, tokenTypeIds }, { wordEmbeddings }).lastHiddenState;
    const discLogits = this.discriminator.discriminator_predictions.forward(hidden).float();
    const discLoss = replacedTokenDetectionLoss(discLogits, replaced, attentionMask);
    const loss = genLoss.add(discLoss.mul(options.discWeight));

    const statistics = electraStatistics({ loss, genLoss, discLoss, genLogits, discLogits, replaced, attentionMask, masking });
    return { loss, genLoss, discLoss, genLogits, sampledIds, discInputIds, replaced, discLogits, statistics };
  }
}

/**
 * One micro-batch's summed statistics, in ELECTRA_STATISTICS order, on the device (no host read).
 * In a scope of its own: the float32 copy of the logits goes as soon as it is counted.
 */
export function electraStatistics(parts: {
  loss: Tensor; genLoss: Tensor; discLoss: Tensor; genLogits: Tensor; discLogits: Tensor;
  replaced: Tensor<'bool'>; attentionMask: Tensor; masking: Masking;
}): Tensor<'float32'> {
  const { loss, genLoss, discLoss, genLogits, discLogits, replaced, attentionMask, masking } = parts;
  return noGrad(() => tidy(() => {
    const real = attentionMask.ne(0);
    const predicted = discLogits.gt(0).logicalAnd(real);
    // argmax of the float32 copy: the same index (bf16 -> float32 is exact), and under bf16
    // autocast 2.4x faster than a bf16 argmax over the vocabulary here (16 ms against 38 ms at [16, 19, 32000]).
    const correctGen = genLogits.detach().float().argmax(-1).eq(masking.originalIds).to('float32').mul(masking.weights).sum();
    const sum = (t: Tensor<'bool'>) => t.sum(undefined, false, 'float32');
    return stack([
      loss.detach().float(), genLoss.detach().float(), discLoss.detach().float(),
      correctGen, masking.weights.sum(),
      sum(predicted.eq(replaced).logicalAnd(real)), sum(real),
      sum(predicted.logicalAnd(replaced)), sum(predicted), sum(replaced),
    ]) as Tensor<'float32'>;
  }));
}

/** Log values from summed statistics (ELECTRA_STATISTICS order) over `microBatches` micro-batches. */
export function electraMetrics(sums: readonly number[], microBatches: number): Record<string, number> {
  const s = Object.fromEntries(ELECTRA_STATISTICS.map((name, i) => [name, sums[i]])) as Record<(typeof ELECTRA_STATISTICS)[number], number>;
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    loss: s.loss / microBatches,
    gen_loss: s.gen_loss / microBatches,
    disc_loss: s.disc_loss / microBatches,
    gen_accuracy: ratio(s.gen_correct, s.gen_slots),
    disc_accuracy: ratio(s.disc_correct, s.real_tokens),
    disc_precision: ratio(s.true_positive, s.predicted_positive),
    disc_recall: ratio(s.true_positive, s.replaced),
    replaced_fraction: ratio(s.replaced, s.real_tokens),
  };
}
