// The biaffine dependency parser of Dozat and Manning (2017, "Deep biaffine attention for neural
// dependency parsing") over an encoder's states: each word is the state of its first sub-word,
// the root is the [CLS] state. Four ReLU MLPs give dependent/head views for arcs and relations;
//   s_arc[i, j]    = [h_dep_i; 1]^T U_arc h_head_j                 (a bilinear term plus a head prior)
//   s_rel[i, j, r] = [h_dep_i; 1]^T U_r [h_head_j; 1]              (bilinear, both linear terms and a bias)
// Training: cross-entropy over heads for every word, and over relations at the gold head.
// Decoding: the maximum spanning tree with exactly one word attached to the root (Chu-Liu/Edmonds).
import { Tensor, IndexDType, zeros, randn, arange, cat, einsum, crossEntropy, dropout, Generator } from '../tensor';
import { Module, Parameter, Linear } from '../nn';
import { lowestValue } from '../models/activations';

export interface BiaffineOptions {
  hiddenSize: number;
  relations: number;
  /** Width of the arc MLPs (Dozat & Manning: 500). */
  arcSize: number;
  /** Width of the relation MLPs (Dozat & Manning: 100). */
  relSize: number;
  /** Dropout on the MLP outputs (Dozat & Manning: 0.33). */
  mlpDropout: number;
}

function initLinear(layer: Linear, generator?: Generator): void {
  // N(0, 1/fan_in): keeps the ReLU views at the encoder's scale whatever the widths.
  layer.weight.dispose();
  layer.weight = new Parameter(randn([layer.outFeatures, layer.inFeatures], { generator }).mul(1 / Math.sqrt(layer.inFeatures)));
}

export class BiaffineParserHead extends Module {
  arc_dep: Linear;
  arc_head: Linear;
  rel_dep: Linear;
  rel_head: Linear;
  /** [arcSize + 1, arcSize] */
  arc_weight: Parameter;
  /** [relations, relSize + 1, relSize + 1] */
  rel_weight: Parameter;

  constructor(readonly options: BiaffineOptions, init: { generator?: Generator } = {}) {
    super();
    const { hiddenSize, arcSize, relSize, relations } = options;
    this.arc_dep = new Linear(hiddenSize, arcSize);
    this.arc_head = new Linear(hiddenSize, arcSize);
    this.rel_dep = new Linear(hiddenSize, relSize);
    this.rel_head = new Linear(hiddenSize, relSize);
    for (const layer of [this.arc_dep, this.arc_head, this.rel_dep, this.rel_head]) initLinear(layer, init.generator);
    // Zero biaffine weights, as Dozat & Manning and supar start: every head equally likely at first.
    this.arc_weight = new Parameter(zeros([arcSize + 1, arcSize]));
    this.rel_weight = new Parameter(zeros([relations, relSize + 1, relSize + 1]));
  }

  private view(layer: Linear, x: Tensor): Tensor {
    return dropout(layer.forward(x).relu(), this.options.mlpDropout, this.training);
  }

  /**
   * words [B, W, H] (first sub-word states), root [B, H] ([CLS]); wordMask [B, W] (1 = a word).
   * Returns arc scores [B, W, W + 1] (dependent i over heads 0 = root, 1..W; padded heads and the
   * word itself at the lowest value) and the relation views for relationScores.
   */
  forward(words: Tensor, root: Tensor, wordMask: Tensor): { arcScores: Tensor; relDep: Tensor; relHead: Tensor } {
    const [B, W] = words.shape;
    const nodes = cat([root.unsqueeze(1), words], 1);
    const withOne = (x: Tensor) => cat([x, x.narrow(-1, 0, 1).mul(0).add(1)], -1);
    const arcDep = withOne(this.view(this.arc_dep, words));
    const arcHead = this.view(this.arc_head, nodes);
    const arcScores = arcDep.matmul(this.arc_weight).matmul(arcHead.transpose(1, 2));
    const headIsPad = cat([zeros([B, 1], { dtype: 'bool', device: wordMask.device }), wordMask.eq(0)], 1).view(B, 1, W + 1);
    // Word i is node i + 1: it cannot head itself.
    const device = wordMask.device;
    const self = arange(0, W + 1, 1, { device }).view(1, W + 1).eq(arange(1, W + 1, 1, { device }).view(W, 1));
    const blocked = headIsPad.logicalOr(self.view(1, W, W + 1));
    return {
      arcScores: arcScores.maskedFill(blocked, lowestValue(arcScores.dtype)),
      relDep: withOne(this.view(this.rel_dep, words)),
      relHead: withOne(this.view(this.rel_head, nodes)),
    };
  }

  /** Relation scores [B, W, R] of each word with the head given by heads [B, W] (0 = root). */
  relationScores(relDep: Tensor, relHead: Tensor, heads: Tensor<IndexDType>): Tensor {
    const [B, W, D] = relDep.shape;
    const chosen = relHead.gather(1, heads.unsqueeze(-1).expand(B, W, D));
    return einsum('bwd,rde,bwe->bwr', relDep, this.rel_weight, chosen);
  }

  /** Cross-entropy of the gold heads and of the relations at them over the words (padding: -100), each summed or averaged over its words. */
  loss(arcScores: Tensor, relDep: Tensor, relHead: Tensor, goldHeads: Tensor<'int64'>, goldRelations: Tensor<'int64'>, reduction: 'mean' | 'sum' = 'mean'): { arcs: Tensor; relations: Tensor } {
    const R = this.options.relations;
    const arcs = crossEntropy(arcScores.reshape(-1, arcScores.size(-1)), goldHeads.reshape(-1), { ignoreIndex: -100, reduction });
    const safeHeads = goldHeads.clamp(0) as Tensor<'int64'>;
    const relScores = this.relationScores(relDep, relHead, safeHeads);
    const relations = crossEntropy(relScores.reshape(-1, R), goldRelations.reshape(-1), { ignoreIndex: -100, reduction });
    return { arcs, relations };
  }
}

// ---- decoding ------------------------------------------------------------------------------------

/** A cycle of the head assignment `heads` (heads[0] ignored: the root), as a node list, or null. */
function findCycle(heads: Int32Array): number[] | null {
  const n = heads.length;
  const state = new Uint8Array(n); // 0 unseen, 1 on the current path, 2 done
  state[0] = 2;
  for (let start = 1; start < n; start++) {
    if (state[start]) continue;
    const path: number[] = [];
    let v = start;
    while (state[v] === 0) {
      state[v] = 1;
      path.push(v);
      v = heads[v];
    }
    if (state[v] === 1) return path.slice(path.indexOf(v));
    for (const u of path) state[u] = 2;
  }
  return null;
}

/**
 * Maximum spanning arborescence rooted at 0 (Chu-Liu/Edmonds, by contraction). scores[i][j] is the
 * score of j heading i, for i >= 1; returns heads with heads[0] = 0.
 */
function chuLiuEdmonds(scores: Float64Array[]): Int32Array {
  const n = scores.length;
  const heads = new Int32Array(n);
  for (let i = 1; i < n; i++) {
    let best = -Infinity;
    let arg = 0;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      if (scores[i][j] > best) { best = scores[i][j]; arg = j; }
    }
    heads[i] = arg;
  }
  const cycle = findCycle(heads);
  if (!cycle) return heads;
  const inCycle = new Uint8Array(n);
  for (const v of cycle) inCycle[v] = 1;
  const outside: number[] = [];
  for (let v = 0; v < n; v++) if (!inCycle[v]) outside.push(v);
  const cycleScore = cycle.reduce((sum, v) => sum + scores[v][heads[v]], 0);
  // The contracted graph: outside nodes keep their order (root first), the cycle is the last node c.
  const m = outside.length + 1;
  const c = m - 1;
  const sub = Array.from({ length: m }, () => new Float64Array(m).fill(-Infinity));
  // Which cycle node an outside head enters through, and which cycle node heads an outside dependent.
  const enterVia = new Int32Array(m);
  const leaveFrom = new Int32Array(m);
  outside.forEach((v, a) => {
    outside.forEach((u, b) => { if (a !== b) sub[a][b] = scores[v][u]; });
    // c as the head of v: its best cycle node.
    let best = -Infinity;
    for (const u of cycle) if (scores[v][u] > best) { best = scores[v][u]; leaveFrom[a] = u; }
    sub[a][c] = best;
    // v as the head of c: break the cycle where entering from v costs least.
    let bestIn = -Infinity;
    for (const u of cycle) {
      const value = scores[u][v] - scores[u][heads[u]] + cycleScore;
      if (value > bestIn) { bestIn = value; enterVia[a] = u; }
    }
    sub[c][a] = bestIn;
  });
  const contracted = chuLiuEdmonds(sub);
  const result = new Int32Array(n);
  for (const v of cycle) result[v] = heads[v];
  outside.forEach((v, a) => {
    if (a === 0) return;
    const h = contracted[a];
    result[v] = h === c ? leaveFrom[a] : outside[h];
  });
  const entering = contracted[c];
  result[enterVia[entering]] = outside[entering];
  return result;
}

/**
 * The best tree over words 1..n with exactly one word attached to the root, from arc scores
 * scores[i - 1][j] (word i headed by j, 0 = root). Returns the head of each word.
 */
export function decodeTree(scores: ArrayLike<number>[], n: number): number[] {
  // Each extra root attachment costs a constant larger than any score difference, so the
  // maximum tree has exactly one (the constant is the same for every tree with one).
  let spread = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j <= n; j++) if (j !== i + 1 && Number.isFinite(scores[i][j])) spread = Math.max(spread, Math.abs(scores[i][j]));
  const penalty = 2 * (n + 1) * (spread + 1);
  const matrix: Float64Array[] = [new Float64Array(n + 1).fill(-Infinity)];
  for (let i = 0; i < n; i++) {
    const row = new Float64Array(n + 1);
    for (let j = 0; j <= n; j++) {
      const value = j === i + 1 || !Number.isFinite(scores[i][j]) ? -Infinity : scores[i][j];
      row[j] = j === 0 ? value - penalty : value;
    }
    matrix.push(row);
  }
  return Array.from(chuLiuEdmonds(matrix).subarray(1));
}
