// Scores of fine-tuned models, on label strings (so a gold label the model never saw in training
// simply never matches: it counts as an error, as it should).

export interface LabelScore {
  precision: number;
  recall: number;
  f1: number;
  /** Gold occurrences. */
  support: number;
}

export interface ClassificationScores {
  accuracy: number;
  /** Unweighted mean of the per-label F1 over the labels present in gold or predictions. */
  macro_f1: number;
  per_label: Record<string, LabelScore>;
  count: number;
}

function f1Of(tp: number, predicted: number, gold: number): { precision: number; recall: number; f1: number } {
  const precision = predicted === 0 ? 0 : tp / predicted;
  const recall = gold === 0 ? 0 : tp / gold;
  return { precision, recall, f1: precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall) };
}

/** Accuracy, per-label precision/recall/F1 and macro-F1 of aligned gold and predicted labels. */
export function classificationScores(gold: readonly string[], predicted: readonly string[]): ClassificationScores {
  if (gold.length !== predicted.length) throw new Error(`classificationScores: ${gold.length} gold labels, ${predicted.length} predictions`);
  const counts = new Map<string, { tp: number; gold: number; predicted: number }>();
  const entry = (label: string) => {
    let c = counts.get(label);
    if (!c) counts.set(label, c = { tp: 0, gold: 0, predicted: 0 });
    return c;
  };
  let correct = 0;
  gold.forEach((g, i) => {
    const p = predicted[i];
    entry(g).gold++;
    entry(p).predicted++;
    if (g === p) {
      correct++;
      entry(g).tp++;
    }
  });
  const per_label: Record<string, LabelScore> = {};
  for (const label of [...counts.keys()].sort()) {
    const c = counts.get(label)!;
    per_label[label] = { ...f1Of(c.tp, c.predicted, c.gold), support: c.gold };
  }
  const f1s = Object.values(per_label).map((s) => s.f1);
  return {
    accuracy: gold.length === 0 ? 0 : correct / gold.length,
    macro_f1: f1s.length === 0 ? 0 : f1s.reduce((a, b) => a + b, 0) / f1s.length,
    per_label,
    count: gold.length,
  };
}

// ---- entities (BIO / BIOES) ----------------------------------------------------------------------

/** Whether every label is O or a B-/I-/E-/S- (also L-/U-) prefixed tag: entity F1 applies. */
export function isEntityTagSet(labels: Iterable<string>): boolean {
  let any = false;
  for (const label of labels) {
    if (label === 'O') continue;
    if (!/^[BIESLU]-./.test(label)) return false;
    any = true;
  }
  return any;
}

function split(tag: string): [string, string] {
  if (tag === 'O' || !/^[BIESLU]-/.test(tag)) return ['O', ''];
  const prefix = tag[0] === 'L' ? 'E' : tag[0] === 'U' ? 'S' : tag[0];
  return [prefix, tag.slice(2)];
}

/** Entities as "type start end" strings (end inclusive), by conlleval's chunk rules. */
export function entitySpans(tags: readonly string[]): string[] {
  const spans: string[] = [];
  let start = -1;
  let type = '';
  let previous: [string, string] = ['O', ''];
  const close = (end: number) => {
    if (start >= 0) spans.push(`${type} ${start} ${end}`);
    start = -1;
  };
  tags.forEach((tag, i) => {
    const [prefix, kind] = split(tag);
    const [prevPrefix, prevKind] = previous;
    const endsBefore = start >= 0 && (prefix === 'O' || prefix === 'B' || prefix === 'S' || kind !== prevKind || prevPrefix === 'E' || prevPrefix === 'S');
    if (endsBefore) close(i - 1);
    const begins = prefix === 'B' || prefix === 'S' || ((prefix === 'I' || prefix === 'E') && start < 0);
    if (begins) {
      start = i;
      type = kind;
    }
    if (prefix === 'E' || prefix === 'S') close(i);
    previous = [prefix, kind];
  });
  close(tags.length - 1);
  return spans;
}

export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
  per_type: Record<string, LabelScore>;
}

/** Entity-level precision/recall/F1 (exact span and type), micro over sentences, and per type. */
export function entityScores(gold: readonly (readonly string[])[], predicted: readonly (readonly string[])[]): EntityScores {
  const byType = new Map<string, { tp: number; gold: number; predicted: number }>();
  const entry = (type: string) => {
    let c = byType.get(type);
    if (!c) byType.set(type, c = { tp: 0, gold: 0, predicted: 0 });
    return c;
  };
  let tp = 0;
  let goldCount = 0;
  let predictedCount = 0;
  gold.forEach((sentence, s) => {
    const g = new Set(entitySpans(sentence));
    const p = entitySpans(predicted[s]);
    for (const span of g) entry(span.split(' ')[0]).gold++;
    for (const span of p) {
      const type = span.split(' ')[0];
      entry(type).predicted++;
      if (g.has(span)) {
        tp++;
        entry(type).tp++;
      }
    }
    goldCount += g.size;
    predictedCount += p.length;
  });
  const per_type: Record<string, LabelScore> = {};
  for (const type of [...byType.keys()].sort()) {
    const c = byType.get(type)!;
    per_type[type] = { ...f1Of(c.tp, c.predicted, c.gold), support: c.gold };
  }
  return { ...f1Of(tp, predictedCount, goldCount), per_type };
}

// ---- dependencies --------------------------------------------------------------------------------

export interface AttachmentScores {
  /** Words whose head is right. */
  uas: number;
  /** Words whose head and universal relation (the part before ":", as the CoNLL 2018 scorer compares) are right. */
  las: number;
  /** Head and full relation, subtypes included (nmod:poss vs nmod counts as wrong). */
  las_full: number;
  words: number;
}

/** UAS/LAS over every syntactic word, punctuation included (the CoNLL 2018 shared task's rule). */
export function attachmentScores(
  gold: readonly { heads: readonly number[]; relations: readonly string[] }[],
  predicted: readonly { heads: readonly number[]; relations: readonly string[] }[],
): AttachmentScores {
  let words = 0;
  let heads = 0;
  let labelled = 0;
  let labelledFull = 0;
  const universal = (relation: string) => relation.split(':')[0];
  gold.forEach((sentence, s) => {
    const p = predicted[s];
    if (p.heads.length !== sentence.heads.length) throw new Error(`attachmentScores: sentence ${s} has ${sentence.heads.length} gold words and ${p.heads.length} predicted`);
    sentence.heads.forEach((head, i) => {
      words++;
      if (p.heads[i] !== head) return;
      heads++;
      if (universal(p.relations[i]) === universal(sentence.relations[i])) labelled++;
      if (p.relations[i] === sentence.relations[i]) labelledFull++;
    });
  });
  const ratio = (n: number) => (words === 0 ? 0 : n / words);
  return { uas: ratio(heads), las: ratio(labelled), las_full: ratio(labelledFull), words };
}
