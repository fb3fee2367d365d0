// Statistical and unit tests of the pretraining objectives' random parts (src/pretrain/electra.ts,
// src/pretrain/mlm.ts): ELECTRA's masking (slot count, candidates, 85% [MASK] / 15% kept,
// positions uniform WITH replacement), BERT's masking (80/10/10, positions unique), the generator's
// sampling (sampleTokens) against softmax(logits / T), and determinism for a fixed Generator seed.
//
// Tolerances: every frequency is checked against its exact expectation within 5 standard
// deviations of the sampling noise (a binomial's sqrt(p(1-p)/n), a chi-square's sqrt(2 dof)).
// The streams are seeded, so the tests are deterministic; the 5-sigma width only decides how far
// an implementation may drift before failing: a false failure of a correct sampler has odds
// below 1e-6 per check, while the errors these tests are for (sampling without replacement,
// 80% instead of 85%, an ignored temperature) sit tens of sigmas away.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, Tensor, setNumThreads, tensor, tidy } from '../src/tensor';
import { tinyDebertaConfig } from '../src/models/presets';
import { ElectraModel, Masking, MaskingOptions, SpecialTokenIds, electraMask, sampleTokens } from '../src/pretrain/electra';
import { bertMask } from '../src/pretrain/mlm';

setNumThreads(2);

const VOCAB = 100;
const SPECIAL: SpecialTokenIds = { pad: 0, cls: 1, sep: 2, mask: 3 };
const FIRST_FREE = 4;
const WIDTH = 128;
const SLOTS = 19; // int((0.15 + 0.005) * 128), SPEC section 4
const ELECTRA: MaskingOptions = { maskProb: 0.15, maskTokenProb: 0.85, randomTokenProb: 0 };
const BERT: MaskingOptions = { maskProb: 0.15, maskTokenProb: 0.8, randomTokenProb: 0.1 };
const SIGMAS = 5;

/** A deterministic integer stream for building batches (independent of the library's RNG). */
function lcg(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
}

interface HostBatch {
  ids: number[][];
  mask: number[][];
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor<'int64'>;
}

function hostBatch(ids: number[][]): HostBatch {
  const mask = ids.map((row) => row.map((t) => (t === SPECIAL.pad ? 0 : 1)));
  return { ids, mask, inputIds: tensor(ids, { dtype: 'int64' }), attentionMask: tensor(mask, { dtype: 'int64' }) };
}

/** `count` full-length rows [CLS] 126 ordinary tokens [SEP]: 126 candidates each. */
function fullRows(count = 800): HostBatch {
  const rows: number[][] = [];
  const next = lcg(5);
  for (let r = 0; r < count; r++) {
    rows.push(Array.from({ length: WIDTH }, (_, i) => (i === 0 ? SPECIAL.cls : i === WIDTH - 1 ? SPECIAL.sep : FIRST_FREE + next(VOCAB - FIRST_FREE))));
  }
  return hostBatch(rows);
}

/**
 * Rows of every length 2..128 (three times over), padded, about 5% of the inner tokens being
 * [MASK] already, plus the degenerate rows "[CLS] [SEP]" and "[CLS] [MASK] [SEP]" (no candidate).
 */
function variedRows(): HostBatch {
  const next = lcg(9);
  const rows: number[][] = [];
  const lengths = [2, 3, ...Array.from({ length: 3 * (WIDTH - 1) }, (_, i) => 2 + (i % (WIDTH - 1)))];
  for (const [r, length] of lengths.entries()) {
    rows.push(Array.from({ length: WIDTH }, (_, i) => {
      if (i >= length) return SPECIAL.pad;
      if (i === 0) return SPECIAL.cls;
      if (i === length - 1) return SPECIAL.sep;
      if (r === 1 || next(20) === 0) return SPECIAL.mask;
      return FIRST_FREE + next(VOCAB - FIRST_FREE);
    }));
  }
  return hostBatch(rows);
}

interface HostMasking { input: number[][]; positions: number[][]; original: number[][]; weights: number[][] }

function toHost(masking: Masking): HostMasking {
  return {
    input: masking.inputIds.toArray() as number[][], positions: masking.positions.toArray() as number[][],
    original: masking.originalIds.toArray() as number[][], weights: masking.weights.toArray() as number[][],
  };
}

function isCandidate(batch: HostBatch, b: number, p: number): boolean {
  const t = batch.ids[b][p];
  return batch.mask[b][p] === 1 && t !== SPECIAL.cls && t !== SPECIAL.sep && t !== SPECIAL.mask && t !== SPECIAL.pad;
}

/**
 * Counts num_to_predict = max(1, min(N, round(n_real * 0.15))) may take, n_real counting
 * [CLS]/[SEP] as NVIDIA does; both neighbours where n_real * 0.15 is a half (float32 or float64
 * rounding of 0.15 decides the side there), none beyond the row's candidates.
 */
function allowedCounts(nReal: number, candidates: number): number[] {
  const exact = nReal * 0.15;
  const rounded = Math.abs(exact - Math.floor(exact) - 0.5) < 1e-6 ? [Math.floor(exact), Math.ceil(exact)] : [Math.round(exact)];
  return rounded.map((k) => Math.min(candidates, Math.max(1, Math.min(SLOTS, k))));
}

/** The structural rules both maskings obey; returns the used (row, slot) pairs. */
function checkStructure(batch: HostBatch, m: HostMasking, what: string, unique: boolean): void {
  assert.is(m.positions.length, batch.ids.length);
  for (const [b, row] of m.positions.entries()) {
    assert.is(row.length, SLOTS, `${what}: slots per row`);
    const nReal = batch.mask[b].reduce((a, v) => a + v, 0);
    const candidates = batch.ids[b].filter((_, p) => isCandidate(batch, b, p)).length;
    const count = m.weights[b].reduce((a, v) => a + v, 0);
    assert.ok(allowedCounts(nReal, candidates).includes(count), `${what} row ${b}: ${count} used slots for ${nReal} real tokens, ${candidates} candidates`);
    const chosen = new Set<number>();
    for (let n = 0; n < SLOTS; n++) {
      const used = n < count;
      assert.is(m.weights[b][n], used ? 1 : 0, `${what} row ${b}: used slots first, weight 1, then 0`);
      if (!used) {
        assert.is(row[n], 0, `${what} row ${b} slot ${n}: an unused slot's position is 0`);
        continue;
      }
      assert.ok(isCandidate(batch, b, row[n]), `${what} row ${b}: position ${row[n]} (token ${batch.ids[b][row[n]]}) is not a candidate`);
      assert.is(m.original[b][n], batch.ids[b][row[n]], `${what} row ${b}: originalIds`);
      if (unique) assert.not.ok(chosen.has(row[n]), `${what} row ${b}: position ${row[n]} drawn twice`);
      chosen.add(row[n]);
    }
    for (let p = 0; p < WIDTH; p++) {
      if (!chosen.has(p)) assert.is(m.input[b][p], batch.ids[b][p], `${what} row ${b}: position ${p} changed but not chosen`);
    }
  }
}

function withinSigmas(observed: number, p: number, n: number, what: string, slack = 0): void {
  const sigma = Math.sqrt((p * (1 - p)) / n);
  assert.ok(Math.abs(observed - p) <= SIGMAS * sigma + slack, `${what}: ${observed.toFixed(4)} vs expected ${p.toFixed(4)} (sigma ${sigma.toExponential(2)}, n ${n})`);
}

/** Pearson's chi-square of counts against equal cells, checked within 5 sigma of its mean (dof). */
function checkUniform(counts: number[], what: string): void {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
  const dof = counts.length - 1;
  assert.ok(chi2 <= dof + SIGMAS * Math.sqrt(2 * dof), `${what}: chi-square ${chi2.toFixed(1)} over ${dof} degrees of freedom`);
}

function positionCounts(m: HostMasking): number[] {
  const counts = new Array(WIDTH - 2).fill(0);
  m.positions.forEach((row, b) => row.forEach((p, n) => { if (m.weights[b][n] > 0) counts[p - 1]++; }));
  return counts;
}

test('electraMask: slot count, candidates only, unused slots weight 0 at position 0, only [MASK] or the original written', () => tidy(() => {
  const batch = variedRows();
  using generator = new Generator({ seed: 1 });
  const m = toHost(electraMask(batch.inputIds, batch.attentionMask, SPECIAL, ELECTRA, generator));
  checkStructure(batch, m, 'electraMask', false);
  m.positions.forEach((row, b) => row.forEach((p, n) => {
    if (m.weights[b][n] > 0) assert.ok([SPECIAL.mask, batch.ids[b][p]].includes(m.input[b][p]), `row ${b}: random token ${m.input[b][p]} at ${p}`);
  }));
  assert.equal([m.weights[0], m.weights[1]].map((w) => w.reduce((a, v) => a + v, 0)), [0, 0], 'rows without a candidate predict nothing');
}));

test('electraMask: positions uniform over candidates WITH replacement, 85% of slots [MASK], 15% kept', () => tidy(() => {
  const batch = fullRows();
  using generator = new Generator({ seed: 2 });
  const m = toHost(electraMask(batch.inputIds, batch.attentionMask, SPECIAL, ELECTRA, generator));
  checkStructure(batch, m, 'electraMask', false);
  checkUniform(positionCounts(m), 'position counts');

  // Distinct positions per row for k draws with replacement from c cells: c (1 - q1), where
  // q1 = (1 - 1/c)^k; the variance of the number of empty cells is c q1 + c (c-1) q2 - c^2 q1^2.
  const c = WIDTH - 2;
  const k = SLOTS;
  const q1 = (1 - 1 / c) ** k;
  const q2 = (1 - 2 / c) ** k;
  const rows = m.positions.length;
  const variance = c * q1 + c * (c - 1) * q2 - c * c * q1 * q1;
  const duplicates = m.positions.reduce((a, row) => a + k - new Set(row).size, 0);
  const expected = rows * (k - c * (1 - q1));
  const sigma = Math.sqrt(rows * variance);
  assert.ok(Math.abs(duplicates - expected) <= SIGMAS * sigma, `${duplicates} repeated draws, expected ${expected.toFixed(0)} +- ${sigma.toFixed(0)}`);

  // [MASK] fraction over slots whose position no other slot shares (a shared position shows one outcome for two slots).
  let masked = 0;
  let slots = 0;
  m.positions.forEach((row, b) => row.forEach((p, n) => {
    if (row.indexOf(p) !== row.lastIndexOf(p) || m.weights[b][n] === 0) return;
    slots++;
    if (m.input[b][p] === SPECIAL.mask) masked++;
    else assert.is(m.input[b][p], batch.ids[b][p], 'a kept slot keeps its token (no random replacement)');
  }));
  withinSigmas(masked / slots, 0.85, slots, 'electraMask [MASK] fraction');
}));

test('bertMask: slot count and candidates, positions unique and uniform, 80% [MASK] / 10% random / 10% kept', () => tidy(() => {
  const varied = variedRows();
  const batch = fullRows();
  using generator = new Generator({ seed: 3 });
  checkStructure(varied, toHost(bertMask(varied.inputIds, varied.attentionMask, SPECIAL, BERT, VOCAB, generator)), 'bertMask (varied rows)', true);
  const m = toHost(bertMask(batch.inputIds, batch.attentionMask, SPECIAL, BERT, VOCAB, generator));
  checkStructure(batch, m, 'bertMask', true);
  checkUniform(positionCounts(m), 'bertMask position counts');
  const outcome = { mask: 0, kept: 0, random: 0 };
  const randomTokens = new Set<number>();
  let slots = 0;
  m.positions.forEach((row, b) => row.forEach((p, n) => {
    if (m.weights[b][n] === 0) return;
    slots++;
    const written = m.input[b][p];
    if (written === SPECIAL.mask) outcome.mask++;
    else if (written === batch.ids[b][p]) outcome.kept++;
    else {
      outcome.random++;
      randomTokens.add(written);
      assert.ok(Number.isInteger(written) && written >= 0 && written < VOCAB, `random token ${written} outside the vocabulary`);
    }
  }));
  // A random draw can hit [MASK] or the original token itself (each about 1/V of the 10%): slack 0.1 * 2 / V.
  const slack = (0.1 * 2) / VOCAB;
  withinSigmas(outcome.mask / slots, 0.8, slots, 'bertMask [MASK] fraction', slack);
  withinSigmas(outcome.kept / slots, 0.1, slots, 'bertMask kept fraction', slack);
  withinSigmas(outcome.random / slots, 0.1, slots, 'bertMask random fraction', slack);
  assert.ok(randomTokens.size >= 0.8 * VOCAB, `random tokens cover only ${randomTokens.size} of ${VOCAB} ids`);
}));

function softmax(logits: number[], temperature: number): number[] {
  const scaled = logits.map((x) => x / temperature);
  const top = Math.max(...scaled);
  const e = scaled.map((x) => Math.exp(x - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

for (const temperature of [1, 2]) {
  test(`sampleTokens at T = ${temperature}: frequencies match softmax(logits / T)`, () => {
    const logits = [2, 1, 0.5, 0, -0.5, -1, -3, 1.5];
    const draws = 50_000;
    using generator = new Generator({ seed: 40 + temperature });
    const samples = tidy(() => {
      const rows = tensor([logits]).expand(draws, logits.length).contiguous();
      return sampleTokens(rows, temperature, generator).toArray() as number[];
    });
    const counts = new Array(logits.length).fill(0);
    for (const s of samples) counts[s]++;
    const p = softmax(logits, temperature);
    counts.forEach((count, k) => withinSigmas(count / draws, p[k], draws, `T=${temperature} token ${k}`));
    const chi2 = counts.reduce((a, count, k) => a + (count - draws * p[k]) ** 2 / (draws * p[k]), 0);
    const dof = logits.length - 1;
    assert.ok(chi2 <= dof + SIGMAS * Math.sqrt(2 * dof), `chi-square ${chi2.toFixed(1)} over ${dof} degrees of freedom`);
  });
}

test('sampleTokens takes no gradient and leaves logits of any shape [.., V] -> [..]', () => {
  tidy(() => {
    const logits = tensor([[[0.1, 5, 0.2], [9, 0, 0]]]).requiresGrad_();
    using generator = new Generator({ seed: 1 });
    const sampled = sampleTokens(logits, 1, generator);
    assert.equal(sampled.shape, [1, 2]);
    assert.is(sampled.dtype, 'int64');
    assert.not.ok(sampled.requiresGrad);
  });
});

test('sampleTokens never draws a token of zero probability (-inf, or underflowed next to a far larger logit)', () => {
  tidy(() => {
    using generator = new Generator({ seed: 3 });
    const rows = tensor([[-Infinity, 0, -Infinity, 0.5, -Infinity], [0, 0, 0, 200, 0], [-Infinity, -Infinity, -Infinity, -Infinity, 7]])
      .unsqueeze(1).expand(3, 4000, 5).contiguous();
    const sampled = sampleTokens(rows, 1, generator);
    const first = sampled.select(0, 0);
    assert.is(first.eq(1).logicalOr(first.eq(3)).logicalNot().sum().item(), 0, 'row 0 drew a -inf token');
    assert.is(sampled.select(0, 1).ne(3).sum().item(), 0, 'row 1 drew an underflowed token');
    assert.is(sampled.select(0, 2).ne(4).sum().item(), 0, 'row 2 drew a -inf token');
  });
});

test('determinism: one seed gives the same maskings and samples, another seed different ones', () => tidy(() => {
  const batch = fullRows(64);
  const draw = (seed: number) => tidy(() => {
    using generator = new Generator({ seed });
    const e = electraMask(batch.inputIds, batch.attentionMask, SPECIAL, ELECTRA, generator);
    const b = bertMask(batch.inputIds, batch.attentionMask, SPECIAL, BERT, VOCAB, generator);
    const g = sampleTokens(tensor([[0, 0, 0, 0, 0, 0, 0, 0]]).expand(64, 8).contiguous(), 1, generator).toArray();
    return JSON.stringify([toHost(e), toHost(b), g]);
  });
  assert.is(draw(7), draw(7));
  assert.is.not(draw(7), draw(8));
}));

test('ElectraModel.forward samples with sampleTokens(genLogits, T, generator) when no samples are fed', () => {
  const config = tinyDebertaConfig({
    vocab_size: VOCAB, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32, embedding_size: 16, conv_kernel_size: 0,
    hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  });
  using init = new Generator({ seed: 4 });
  const model = new ElectraModel(config, config, 'gdes', { generator: init });
  try {
    model.eval();
    tidy(() => {
      const batch = fullRows(4);
      using maskGenerator = new Generator({ seed: 5 });
      const masking = electraMask(batch.inputIds, batch.attentionMask, SPECIAL, ELECTRA, maskGenerator);
      for (const temperature of [1, 2]) {
        using a = new Generator({ seed: 6 });
        using b = new Generator({ seed: 6 });
        const out = model.forward(batch, masking, { discWeight: 50, temperature, generator: a });
        assert.equal(out.sampledIds.toArray(), sampleTokens(out.genLogits, temperature, b).toArray(), `T=${temperature}`);
      }
    });
  } finally {
    model.dispose();
  }
});

test.run();
