// The pretraining batch stream: shards -> documents -> examples -> shuffle buffer -> batches.
//
// Epoch e visits the shards in a seeded random order and the documents of each shard in a seeded
// random order. Examples (see examples.ts) are built with a generator seeded by (seed, epoch) and pass
// through a shuffle buffer. The stream runs epoch after epoch without end; batches are consecutive
// groups of `batchSize` examples, padded to `maxSeqLength`.
//
// There is one stream whatever the number of data-parallel ranks, as Megatron-LM's global sample
// index: the sequence of examples is a function of the data, the seed and the position only. A rank
// takes its slice of each global batch and `skip`s the others' examples (building an example from
// token ids is cheap next to a training step), so every rank's position after a step is the same
// global count, and a checkpoint written by N ranks resumes on M.
//
// Position: `state()` is {epoch, examplesInEpoch} plus what identifies the stream. `PretrainingLoader.open`
// with that state rebuilds epoch `epoch` and skips the examples already delivered (nothing is
// tokenized again), so a resumed run sees exactly the batches an uninterrupted run would.
// Memory: one shard at a time plus the shuffle buffer.
//
// Split: 'train' reads every document but the ones prepare held out (manifest.json lists them per
// shard), 'held-out' reads only those; the order rules above apply within the split.
import { join } from 'path';
import { ExampleConfig, Example, ExampleBuilder, createExampleBuilder } from './examples';
import { Manifest, checkShardFiles, readManifest } from './manifest';
import { Random } from './random';
import { Shard, readShard } from './shard';

export interface LoaderConfig {
  /** directory written by prepare (manifest.json + shards) */
  dataDir: string;
  examples: ExampleConfig;
  batchSize: number;
  seed: number;
  /** examples held for shuffling (0: no shuffling) */
  shuffleBuffer?: number;
  /** which documents: the training ones (default) or the ones prepare held out */
  split?: LoaderSplit;
}

export type LoaderSplit = 'train' | 'held-out';

export interface Batch {
  /** [batchSize, seqLength], row-major */
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding */
  attentionMask: Uint8Array;
  /** 0 for [CLS] A [SEP], 1 for B [SEP] */
  tokenTypeIds: Uint8Array;
  batchSize: number;
  seqLength: number;
  /** epoch of the batch's first example */
  epoch: number;
}

export interface LoaderState {
  epoch: number;
  examplesInEpoch: number;
  seed: number;
  /** identifies the data and example settings the position refers to */
  fingerprint: string;
}

function fingerprintOf(manifest: Manifest, config: LoaderConfig, split: LoaderSplit): string {
  const shards = manifest.shards.map((shard) => shard.sha256.slice(0, 16)).join(',');
  const heldOut = `${manifest.heldOut.selection}:${manifest.heldOut.fraction}:${manifest.counts.heldOutDocuments}`;
  return JSON.stringify({ tokenizer: manifest.tokenizer.sha256.slice(0, 16), shards, split, heldOut, examples: config.examples, shuffle: config.shuffleBuffer ?? 10_000 });
}

/** The documents of a shard in `split`: their count, and (when not all of them) their indices. */
function splitOfShard(entry: Manifest['shards'][number], split: LoaderSplit): { count: number; members?: () => Uint32Array } {
  const heldOut = entry.heldOutDocuments;
  if (split === 'held-out') return { count: heldOut.length, members: () => Uint32Array.from(heldOut) };
  if (heldOut.length === 0) return { count: entry.documents };
  return {
    count: entry.documents - heldOut.length,
    members: () => {
      const out = new Uint32Array(entry.documents - heldOut.length);
      let next = 0;
      let written = 0;
      for (let document = 0; document < entry.documents; document++) {
        if (next < heldOut.length && heldOut[next] === document) next += 1;
        else out[written++] = document;
      }
      return out;
    },
  };
}

export class PretrainingLoader {
  readonly manifest: Manifest;
  readonly split: LoaderSplit;
  private readonly shuffleSize: number;
  private readonly padId: number;
  private readonly fingerprint: string;
  private epoch = 0;
  private examplesInEpoch = 0;
  private epochStream!: Generator<Example>;

  private constructor(private readonly config: LoaderConfig, state?: LoaderState) {
    this.manifest = readManifest(config.dataDir);
    // The stream is indexed by the manifest's counts: they must be the files' (64 bytes a shard).
    checkShardFiles(config.dataDir, this.manifest);
    if (!(config.batchSize >= 1)) throw new Error('batchSize must be >= 1');
    if (config.examples.maxSeqLength > 0 && this.manifest.counts.tokens === 0) throw new Error(`${config.dataDir} holds no tokens`);
    this.split = config.split ?? 'train';
    if (this.split !== 'train' && this.split !== 'held-out') throw new Error(`split must be 'train' or 'held-out', got ${JSON.stringify(this.split)}`);
    if (this.split === 'held-out' && this.manifest.counts.heldOutDocuments === 0) {
      throw new Error(`${config.dataDir} has no held-out documents (prepared with a held-out fraction of ${this.manifest.heldOut.fraction}); prepare it with --held-out-fraction > 0 or evaluate on other data`);
    }
    this.shuffleSize = config.shuffleBuffer ?? 10_000;
    this.padId = this.manifest.tokenizer.specialTokens.pad;
    this.fingerprint = fingerprintOf(this.manifest, config, this.split);
    if (state) {
      const problems: string[] = [];
      if (state.fingerprint !== this.fingerprint) problems.push('the data or example settings changed');
      if (state.seed !== config.seed) problems.push(`seed ${state.seed} vs ${config.seed}`);
      if (problems.length) throw new Error(`cannot resume the data loader: ${problems.join('; ')}`);
      this.epoch = state.epoch;
    }
    this.epochStream = this.streamEpoch(this.epoch);
    if (state) {
      for (let i = 0; i < state.examplesInEpoch; i++) this.nextExample();
    }
  }

  static open(config: LoaderConfig, state?: LoaderState): PretrainingLoader {
    return new PretrainingLoader(config, state);
  }

  state(): LoaderState {
    return {
      epoch: this.epoch,
      examplesInEpoch: this.examplesInEpoch,
      seed: this.config.seed,
      fingerprint: this.fingerprint,
    };
  }

  next(): Batch {
    const { batchSize } = this.config;
    const seqLength = this.config.examples.maxSeqLength;
    const inputIds = new Int32Array(batchSize * seqLength).fill(this.padId);
    const attentionMask = new Uint8Array(batchSize * seqLength);
    const tokenTypeIds = new Uint8Array(batchSize * seqLength);
    let epoch = this.epoch;
    for (let row = 0; row < batchSize; row++) {
      const example = this.nextExample();
      if (row === 0) epoch = this.epoch;
      const offset = row * seqLength;
      inputIds.set(example.tokens, offset);
      attentionMask.fill(1, offset, offset + example.tokens.length);
      tokenTypeIds.fill(1, offset + example.segmentBStart, offset + example.tokens.length);
    }
    return { inputIds, attentionMask, tokenTypeIds, batchSize, seqLength, epoch };
  }

  /** Passes over `count` examples (another rank's share of a global batch); returns their real tokens. */
  skip(count: number): number {
    let tokens = 0;
    for (let i = 0; i < count; i++) tokens += this.nextExample().tokens.length;
    return tokens;
  }

  private nextExample(): Example {
    for (let emptyEpochs = 0; emptyEpochs < 2; ) {
      const step = this.epochStream.next();
      if (!step.done) {
        this.examplesInEpoch += 1;
        return step.value;
      }
      emptyEpochs = this.examplesInEpoch === 0 ? emptyEpochs + 1 : 0;
      this.epoch += 1;
      this.examplesInEpoch = 0;
      this.epochStream = this.streamEpoch(this.epoch);
    }
    throw new Error(`${this.config.dataDir} yields no examples in its ${this.split} split`);
  }

  /** All examples of one epoch, in delivery order. */
  private *streamEpoch(epoch: number): Generator<Example> {
    const { seed } = this.config;
    const orderRandom = new Random(seed, epoch, 0x5a4d);
    const builder: ExampleBuilder = createExampleBuilder(this.config.examples, this.manifest.tokenizer.specialTokens, new Random(seed, epoch, 0, 0xe1ec));
    const shuffleRandom = new Random(seed, epoch, 0, 0x5f1e);
    const buffer: Example[] = [];
    const shardOrder = orderRandom.permutation(this.manifest.shards.length);
    const emit = function* (this: PretrainingLoader, example: Example): Generator<Example> {
      if (this.shuffleSize <= 0) {
        yield example;
      } else if (buffer.length < this.shuffleSize) {
        buffer.push(example);
      } else {
        const pick = Math.floor(shuffleRandom.random() * buffer.length);
        const out = buffer[pick];
        buffer[pick] = example;
        yield out;
      }
    }.bind(this);
    for (const shardIndex of shardOrder) {
      const { count: shardDocuments, members } = splitOfShard(this.manifest.shards[shardIndex], this.split);
      const documentOrder = orderRandom.permutation(shardDocuments);
      if (shardDocuments === 0) continue;
      const shard: Shard = readShard(join(this.config.dataDir, this.manifest.shards[shardIndex].file));
      const documents = members?.();
      for (let k = 0; k < shardDocuments; k++) {
        const document = documents ? documents[documentOrder[k]] : documentOrder[k];
        const sentences = [];
        for (let s = shard.documentStarts[document]; s < shard.documentStarts[document + 1]; s++) {
          sentences.push(shard.tokens.subarray(shard.sentenceStarts[s], shard.sentenceStarts[s + 1]));
        }
        for (const example of builder.addDocument(sentences)) yield* emit(example);
      }
    }
    for (const example of builder.finish()) yield* emit(example);
    const drainOrder = shuffleRandom.permutation(buffer.length);
    for (const index of drainOrder) yield buffer[index];
  }
}
