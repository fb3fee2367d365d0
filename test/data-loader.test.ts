import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Batch, LoaderConfig, PretrainingLoader } from '../src/data/loader';
import { Manifest, MANIFEST_FORMAT, MANIFEST_VERSION } from '../src/data/prepare';
import { HELD_OUT_SELECTION } from '../src/data/held-out';
import { Random } from '../src/data/random';
import { ShardWriter, shardFileName } from '../src/data/shard';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-loader-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const PAD = 0;
const DOCUMENTS = 240;

// Synthetic shards: document d's tokens are all 100 + d (3 shards of 80 documents). `heldOut`: the
// documents (global indices) the manifest marks as held out; `version: 1` writes a manifest of
// before held-out splits.
function writeDataset(dir: string, { heldOut = [] as number[], version = MANIFEST_VERSION } = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const random = new Random(99);
  const shards: Manifest['shards'] = [];
  let tokens = 0;
  let sentences = 0;
  for (let s = 0; s < 3; s++) {
    const file = path.join(dir, shardFileName(s));
    const writer = new ShardWriter(file, 2, s * 80);
    for (let d = s * 80; d < (s + 1) * 80; d++) {
      const lengths = Int32Array.from({ length: random.randint(1, 8) }, () => random.randint(1, 40));
      const ids = new Int32Array(lengths.reduce((a, b) => a + b, 0)).fill(100 + d);
      writer.append(ids, lengths, Int32Array.of(lengths.length));
    }
    const header = writer.finish();
    tokens += header.tokens;
    sentences += header.sentences;
    shards.push({ file: shardFileName(s), documents: header.documents, sentences: header.sentences, tokens: header.tokens, firstDocument: header.firstDocument, bytes: fs.statSync(file).size, sha256: `${s}`.repeat(64), heldOutDocuments: heldOut.filter((d) => d >= s * 80 && d < (s + 1) * 80).map((d) => d - s * 80) });
  }
  const manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    tokenizer: { file: 'tokenizer/spm.model', sha256: 'f'.repeat(64), pieces: 8000, vocabSize: 8001, tokenWidth: 2, specialTokens: { pad: PAD, cls: 1, sep: 2, unk: 3, mask: 8000 }, specialTokenStrings: { pad: '[PAD]', cls: '[CLS]', sep: '[SEP]', unk: '[UNK]', mask: '[MASK]' } },
    settings: { inputs: [], docsPerLine: false, maxLineChars: 100000, locale: 'fr', shardChars: 1, tokenizerSha256: 'f'.repeat(64) },
    heldOut: { fraction: heldOut.length / DOCUMENTS, selection: HELD_OUT_SELECTION },
    counts: { files: 1, emptyFiles: 0, inputBytes: 0, documents: DOCUMENTS, emptyDocuments: 0, invalidUtf8Replacements: 0, filesWithInvalidUtf8: 0, longLineSplits: 0, longDocumentSplits: 0, sentences, tokens, shards: 3, shardsReused: 0, heldOutDocuments: heldOut.length },
    shards,
  } satisfies Manifest;
  if (version === 1) {
    // What prepare wrote before held-out splits existed.
    const old: Record<string, unknown> = { ...manifest, formatVersion: 1, counts: { ...manifest.counts } };
    delete old.heldOut;
    delete (old.counts as Record<string, unknown>).heldOutDocuments;
    old.shards = shards.map(({ heldOutDocuments: _, ...rest }) => rest);
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(old));
    return;
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
}

const dataDir = path.join(tmp, 'data');
writeDataset(dataDir);

function config(overrides: Partial<LoaderConfig> = {}): LoaderConfig {
  return { dataDir, examples: { mode: 'electra', maxSeqLength: 64 }, batchSize: 8, seed: 5, shuffleBuffer: 50, ...overrides };
}

function documentsOf(batch: Batch): number[] {
  const found: number[] = [];
  for (let i = 0; i < batch.inputIds.length; i++) if (batch.inputIds[i] >= 100) found.push(batch.inputIds[i] - 100);
  return found;
}

test('batches are padded typed arrays with a mask, [CLS] first, and rows from one document each', () => {
  const loader = PretrainingLoader.open(config());
  for (let b = 0; b < 20; b++) {
    const batch = loader.next();
    assert.is(batch.inputIds.length, 8 * 64);
    for (let row = 0; row < 8; row++) {
      const ids = batch.inputIds.subarray(row * 64, (row + 1) * 64);
      const mask = batch.attentionMask.subarray(row * 64, (row + 1) * 64);
      assert.is(ids[0], 1);
      const real = mask.reduce((a, m) => a + m, 0);
      assert.ok(real >= 3 && real <= 64);
      for (let i = real; i < 64; i++) assert.is(ids[i], PAD);
      assert.is(ids[real - 1], 2);
      assert.is(new Set(Array.from(ids.subarray(0, real)).filter((t) => t >= 100)).size, 1);
    }
  }
});

test('a rank that takes its slice of each global batch and skips the rest sees exactly that slice of the one stream', () => {
  // Global batch of 6 micro-batches of 2 examples, 3 ranks with 2 micro-batches each: the union of
  // what the ranks take is the single-process stream, whatever the world size.
  const microBatch = 2;
  const microBatchesPerStep = 6;
  const steps = 40;
  const single = PretrainingLoader.open(config({ batchSize: microBatch, shuffleBuffer: 10 }));
  const expected: string[] = [];
  const expectedTokens: number[] = [];
  for (let i = 0; i < steps * microBatchesPerStep; i++) {
    const batch = single.next();
    expected.push(Array.from(batch.inputIds).join(','));
    expectedTokens.push(batch.attentionMask.reduce((a, m) => a + m, 0));
  }
  for (const worldSize of [1, 2, 3]) {
    const perRank = microBatchesPerStep / worldSize;
    const got: string[] = new Array(expected.length);
    const states: string[] = [];
    for (let rank = 0; rank < worldSize; rank++) {
      const loader = PretrainingLoader.open(config({ batchSize: microBatch, shuffleBuffer: 10 }));
      for (let step = 0; step < steps; step++) {
        let skippedTokens = loader.skip(rank * perRank * microBatch);
        let ownTokens = 0;
        for (let k = 0; k < perRank; k++) {
          const batch = loader.next();
          got[step * microBatchesPerStep + rank * perRank + k] = Array.from(batch.inputIds).join(',');
          ownTokens += batch.attentionMask.reduce((a, m) => a + m, 0);
        }
        skippedTokens += loader.skip((worldSize - rank - 1) * perRank * microBatch);
        const stepTokens = expectedTokens.slice(step * microBatchesPerStep, (step + 1) * microBatchesPerStep).reduce((a, b) => a + b, 0);
        assert.is(skippedTokens + ownTokens, stepTokens, 'skip counts the real tokens it passes over');
      }
      states.push(JSON.stringify(loader.state()));
    }
    assert.equal(got, expected, `world size ${worldSize}`);
    assert.is(new Set(states).size, 1, 'every rank ends at the same position');
  }
});

test('the same seed gives the same batches, another seed other batches; epochs differ in order', () => {
  const take = (loader: PretrainingLoader, count: number) => Array.from({ length: count }, () => Array.from(loader.next().inputIds).join(','));
  const a = take(PretrainingLoader.open(config()), 30);
  const b = take(PretrainingLoader.open(config()), 30);
  const c = take(PretrainingLoader.open(config({ seed: 6 })), 30);
  assert.equal(a, b);
  assert.not.equal(a, c);
});

test('a loader resumed from its state delivers exactly the batches of an uninterrupted one, across epochs', () => {
  for (const examples of [{ mode: 'electra' as const, maxSeqLength: 64 }, { mode: 'full-sentences' as const, maxSeqLength: 128 }]) {
    const uninterrupted = PretrainingLoader.open(config({ examples }));
    const all = Array.from({ length: 120 }, () => uninterrupted.next());
    assert.ok(all[119].epoch >= 2, 'the run should cross epochs');
    const first = PretrainingLoader.open(config({ examples }));
    for (let i = 0; i < 53; i++) first.next();
    const state = JSON.parse(JSON.stringify(first.state()));
    const resumed = PretrainingLoader.open(config({ examples }), state);
    for (let i = 53; i < 120; i++) {
      const batch = resumed.next();
      assert.equal(Array.from(batch.inputIds), Array.from(all[i].inputIds), `batch ${i}`);
      assert.equal(Array.from(batch.attentionMask), Array.from(all[i].attentionMask));
      assert.equal(Array.from(batch.tokenTypeIds), Array.from(all[i].tokenTypeIds));
    }
    assert.throws(() => PretrainingLoader.open(config({ examples, seed: 6 }), state), /cannot resume the data loader: seed/);
    assert.throws(() => PretrainingLoader.open(config({ examples: { ...examples, maxSeqLength: 32 } }), state), /data or example settings changed/);
  }
});

function documentsOfEpoch(loader: PretrainingLoader, epoch = 0): Set<number> {
  const documents = new Set<number>();
  for (let batch = loader.next(); batch.epoch <= epoch; batch = loader.next()) {
    if (batch.epoch === epoch) documentsOf(batch).forEach((d) => documents.add(d));
  }
  return documents;
}

test('splits: train never yields a held-out document, held-out only those; together they cover the corpus', () => {
  const heldOut = [0, 7, 79, 80, 150, 239];
  const dir = path.join(tmp, 'held-out');
  writeDataset(dir, { heldOut });
  {
    const train = documentsOfEpoch(PretrainingLoader.open(config({ dataDir: dir, batchSize: 1 })));
    const held = documentsOfEpoch(PretrainingLoader.open(config({ dataDir: dir, batchSize: 1, split: 'held-out' })));
    assert.equal([...held].sort((a, b) => a - b), heldOut);
    assert.is(train.size, DOCUMENTS - heldOut.length);
    for (const d of heldOut) assert.not.ok(train.has(d), `held-out document ${d} in the train split`);
  }
  // A position in one split is no position in the other.
  const state = PretrainingLoader.open(config({ dataDir: dir })).state();
  assert.throws(() => PretrainingLoader.open(config({ dataDir: dir, split: 'held-out' }), state), /data or example settings changed/);
});

test('a manifest of before held-out splits (version 1) loads: all documents train, held-out is a clear error', () => {
  const dir = path.join(tmp, 'version-1');
  writeDataset(dir, { version: 1 });
  assert.is(JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).formatVersion, 1);
  const loader = PretrainingLoader.open(config({ dataDir: dir, batchSize: 1 }));
  assert.is(loader.manifest.counts.heldOutDocuments, 0);
  assert.is(documentsOfEpoch(loader).size, DOCUMENTS);
  // The train split of data with nothing held out is the stream it always was.
  const take = (directory: string) => {
    const stream = PretrainingLoader.open(config({ dataDir: directory }));
    return Array.from({ length: 20 }, () => Array.from(stream.next().inputIds).join(','));
  };
  assert.equal(take(dir), take(dataDir));
  assert.throws(() => PretrainingLoader.open(config({ dataDir: dir, split: 'held-out' })), /version-1 has no held-out documents/);
});

test.run();
