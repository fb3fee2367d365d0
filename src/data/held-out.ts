// Which documents prepare holds out for evaluation.
//
// A document is held out when a hash of its index in the input stream (documents numbered in corpus
// order, as the shards number them) falls under the fraction. The choice therefore depends only on
// the inputs and the fraction: never on thread timing, shard size or thread count, and a resumed
// run chooses what the interrupted one chose. The shards hold every document; the manifest lists
// the held-out ones per shard, so changing the fraction changes no shard.
import { Random } from './random';

/** Recorded in the manifest: the rule below. A new rule gets a new name. */
export const HELD_OUT_SELECTION = 'document-index-hash-v1';
export const DEFAULT_HELD_OUT_FRACTION = 0.01;

const HELD_OUT_STREAM = 0x4e1d0;

/** A document's draw in [0, 1): it is held out when the draw is under the fraction. */
export function heldOutDraw(documentIndex: number): number {
  return new Random(documentIndex, HELD_OUT_STREAM).random();
}

/**
 * Sees the documents' indices as they stream by and returns the held-out ones at the end. With a
 * fraction > 0 and two documents or more, at least one document is held out (the lowest draw) and
 * at least one is left for training (the highest draw among the held out goes back).
 */
export class HeldOutSelector {
  private readonly chosen: number[] = [];
  private lowest = { index: -1, draw: Infinity };
  private highestChosen = { index: -1, draw: -Infinity };

  constructor(readonly fraction: number) {
    if (!(Number.isFinite(fraction) && fraction >= 0 && fraction < 1)) {
      throw new RangeError(`held-out fraction must be a number in [0, 1), got ${fraction}`);
    }
  }

  consider(documentIndex: number): void {
    if (this.fraction === 0) return;
    const draw = heldOutDraw(documentIndex);
    if (draw < this.lowest.draw) this.lowest = { index: documentIndex, draw };
    if (draw < this.fraction) {
      this.chosen.push(documentIndex);
      if (draw > this.highestChosen.draw) this.highestChosen = { index: documentIndex, draw };
    }
  }

  /** The held-out document indices, ascending, for a corpus of `documents` documents. */
  finish(documents: number): number[] {
    if (this.fraction === 0 || documents < 2) return [];
    let chosen = this.chosen;
    if (chosen.length === 0) chosen = [this.lowest.index];
    else if (chosen.length === documents) chosen = chosen.filter((index) => index !== this.highestChosen.index);
    return [...chosen].sort((a, b) => a - b);
  }
}

/**
 * Splits ascending global document indices into each shard's local indices; `shards` are the
 * manifest's entries in order (each `firstDocument` and `documents`).
 */
export function heldOutPerShard(heldOut: readonly number[], shards: readonly { firstDocument: number; documents: number }[]): number[][] {
  let next = 0;
  return shards.map((shard) => {
    const local: number[] = [];
    const end = shard.firstDocument + shard.documents;
    while (next < heldOut.length && heldOut[next] < end) {
      if (heldOut[next] >= shard.firstDocument) local.push(heldOut[next] - shard.firstDocument);
      next += 1;
    }
    return local;
  });
}
