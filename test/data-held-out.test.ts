// The held-out split prepare carves off: a function of the documents' indices only (not of thread
// count or shard size), at least one document when asked for any, recorded per shard.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { prepare, Manifest } from '../src/data/prepare';
import { HeldOutSelector, heldOutDraw, heldOutPerShard } from '../src/data/held-out';
import { trainTokenizer } from '../src/tokenizer/train';
import { readShard } from '../src/data/shard';
import { repoRoot } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-held-out-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const sample = path.join(repoRoot, 'data', 'demo', 'fr-demo.txt');
const DOCUMENTS = 600;
// One document per line: line d is a sentence of the sample followed by its number.
const sentences = fs.readFileSync(sample, 'utf8').split(/(?<=[.!?])\s+/).filter((s) => s.trim().length > 20);
const corpus = path.join(tmp, 'corpus.txt');
fs.writeFileSync(corpus, Array.from({ length: DOCUMENTS }, (_, d) => `${sentences[d % sentences.length].trim()} ${d}`).join('\n') + '\n');
let tokenizerPath = '';

test.before(async () => {
  tokenizerPath = (await trainTokenizer({ inputs: [sample], vocabSize: 200, outputDir: path.join(tmp, 'tokenizer'), threads: 1 })).modelPath;
});

function heldOutIndices(manifest: Manifest): number[] {
  return manifest.shards.flatMap((shard) => shard.heldOutDocuments.map((local) => shard.firstDocument + local));
}

async function run(name: string, options: { threads: number; shardSizeMB: number; heldOutFraction?: number }): Promise<Manifest> {
  return prepare({ inputs: [corpus], tokenizerPath, outputDir: path.join(tmp, name), docsPerLine: true, ...options });
}

test('the held-out documents depend on nothing but the documents: same set for any thread count and shard size', async () => {
  const one = await run('one-thread', { threads: 1, shardSizeMB: 0.002, heldOutFraction: 0.05 });
  const two = await run('two-threads', { threads: 2, shardSizeMB: 0.02, heldOutFraction: 0.05 });
  assert.ok(one.counts.shards > two.counts.shards, `${one.counts.shards} vs ${two.counts.shards} shards`);
  const expected = Array.from({ length: DOCUMENTS }, (_, d) => d).filter((d) => heldOutDraw(d) < 0.05);
  assert.equal(heldOutIndices(one), expected);
  assert.equal(heldOutIndices(two), expected);
  assert.is(one.counts.heldOutDocuments, expected.length);
  assert.ok(expected.length > 15 && expected.length < 45, `${expected.length} of ${DOCUMENTS} held out at 5%`);
  assert.equal(one.heldOut, { fraction: 0.05, selection: 'document-index-hash-v1' });
  assert.is(one.formatVersion, 2);
  // Every held-out index is a document of its shard.
  for (const shard of one.shards) {
    const header = readShard(path.join(tmp, 'one-thread', shard.file)).header;
    for (const local of shard.heldOutDocuments) assert.ok(local >= 0 && local < header.documents);
  }
});

test('a rerun with another fraction reuses every shard and changes only the manifest', async () => {
  const first = await run('refraction', { threads: 1, shardSizeMB: 0.005, heldOutFraction: 0.05 });
  const second = await run('refraction', { threads: 1, shardSizeMB: 0.005, heldOutFraction: 0.2 });
  assert.is(second.counts.shardsReused, second.counts.shards);
  assert.equal(second.shards.map((s) => s.sha256), first.shards.map((s) => s.sha256));
  assert.ok(second.counts.heldOutDocuments > first.counts.heldOutDocuments);
  const none = await run('refraction', { threads: 1, shardSizeMB: 0.005, heldOutFraction: 0 });
  assert.is(none.counts.heldOutDocuments, 0);
  assert.ok(none.shards.every((shard) => shard.heldOutDocuments.length === 0));
});

test('at least one document is held out when asked for any, and at least one is left to train on', () => {
  const tiny = new HeldOutSelector(1e-9);
  for (let d = 0; d < 50; d++) tiny.consider(d);
  const forced = tiny.finish(50);
  assert.is(forced.length, 1);
  const lowest = Array.from({ length: 50 }, (_, d) => d).reduce((best, d) => (heldOutDraw(d) < heldOutDraw(best) ? d : best), 0);
  assert.equal(forced, [lowest]);
  const greedy = new HeldOutSelector(0.999999);
  for (let d = 0; d < 5; d++) greedy.consider(d);
  assert.is(greedy.finish(5).length, 4);
  const single = new HeldOutSelector(0.5);
  single.consider(0);
  assert.equal(single.finish(1), []);
  assert.throws(() => new HeldOutSelector(1), /held-out fraction must be a number in \[0, 1\), got 1/);
  assert.equal(heldOutPerShard([1, 5, 6, 12], [{ firstDocument: 0, documents: 5 }, { firstDocument: 5, documents: 5 }, { firstDocument: 10, documents: 5 }]), [[1], [0, 1], [2]]);
});

test.run();
