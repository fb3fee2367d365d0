import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Example, createExampleBuilder } from '../src/data/examples';
import { Random } from '../src/data/random';

const CLS = 1;
const SEP = 2;
const special = { cls: CLS, sep: SEP };

function realTokens(example: Example): number[] {
  return Array.from(example.tokens).filter((t) => t !== CLS && t !== SEP);
}

test('ELECTRA examples honour the documented probabilities (1-token sentences, 2.4 million tokens)', () => {
  const max = 128;
  const builder = createExampleBuilder({ mode: 'electra', maxSeqLength: max }, special, new Random(1234));
  const one = Int32Array.of(7);
  const document = new Array<Int32Array>(2_400_000).fill(one);
  const examples = builder.addDocument(document);
  examples.pop(); // the document's last example ends with the document, not at its target
  let oneSegment = 0;
  let short = 0;
  let shortSum = 0;
  let shortMin = Infinity;
  let coinUp = 0;
  let coinSamples = 0;
  // With 1-token sentences accumulation stops exactly at the target t, so an example is t + 2
  // (one segment) or t + 3 (two) tokens long, except that trimming to 128 hides t >= 125.
  // "short" below means a drawn target t <= 124, which randint(5, 128) gives with probability 120/124.
  examples.forEach((example, i) => {
    const length = example.tokens.length;
    assert.ok(length <= max);
    assert.is(example.tokens[0], CLS);
    assert.is(example.tokens[length - 1], SEP);
    const hasB = example.segmentBStart < length;
    if (!hasB) oneSegment += 1;
    const known = hasB ? length <= 127 : length <= 126;
    if (!known || i === 0) return; // the first example's target is max
    const target = length - (hasB ? 3 : 2);
    short += 1;
    shortSum += target;
    shortMin = Math.min(shortMin, target);
    if (hasB) {
      // The first segment stops one below its target, or reaches it on a 0.5 coin.
      const firstTarget = Math.floor((target - 3) / 2);
      const firstLength = example.segmentBStart - 2;
      assert.ok(firstLength === firstTarget || firstLength === firstTarget - 1, `first segment ${firstLength} for target ${target}`);
      coinSamples += 1;
      if (firstLength === firstTarget) coinUp += 1;
    }
  });
  const n = examples.length;
  const sigma = (p: number, count: number) => Math.sqrt((p * (1 - p)) / count);
  assert.ok(n > 15_000, `${n} examples`);
  const oneSegmentRate = oneSegment / n;
  assert.ok(Math.abs(oneSegmentRate - 0.1) < 4 * sigma(0.1, n), `one-segment rate ${oneSegmentRate}`);
  const shortRate = short / (n - 1);
  const expectedShort = 0.05 * (120 / 124);
  assert.ok(Math.abs(shortRate - expectedShort) < 4 * sigma(expectedShort, n), `short-target rate ${shortRate}`);
  assert.ok(shortMin >= 5);
  const shortMean = shortSum / short;
  const uniformSd = Math.sqrt((120 ** 2 - 1) / 12);
  assert.ok(Math.abs(shortMean - 64.5) < 4 * uniformSd / Math.sqrt(short), `short-target mean ${shortMean}`);
  const coinRate = coinUp / coinSamples;
  assert.ok(coinSamples > 500 && Math.abs(coinRate - 0.5) < 4 * sigma(0.5, coinSamples), `over-target coin ${coinRate} of ${coinSamples}`);
});

function syntheticDocuments(count: number, random: Random): Int32Array[][] {
  // Document d's tokens are all 100 + d, so any example shows which documents it came from.
  return Array.from({ length: count }, (_, d) => {
    const sentences = random.randint(1, 12);
    return Array.from({ length: sentences }, () => new Int32Array(random.randint(1, 90)).fill(100 + d));
  });
}

test('ELECTRA examples never cross a document boundary, at 128 and at 512', () => {
  const documents = syntheticDocuments(3000, new Random(7));
  for (const max of [128, 512]) {
    const builder = createExampleBuilder({ mode: 'electra', maxSeqLength: max }, special, new Random(max));
    let examples = 0;
    documents.forEach((document, d) => {
      for (const example of builder.addDocument(document)) {
        examples += 1;
        assert.ok(example.tokens.length <= max);
        const owners = new Set(realTokens(example));
        assert.equal([...owners], [100 + d], `example crosses documents: ${[...owners]}`);
      }
    });
    assert.ok(examples >= documents.length);
  }
});

test('full-sentence packing keeps every token, in order, within documents or across them with [SEP]', () => {
  const documents = syntheticDocuments(500, new Random(11));
  documents[3] = [new Int32Array(700).fill(103)]; // longer than a whole example: cut, not dropped
  for (const crossDocuments of [false, true]) {
    const builder = createExampleBuilder({ mode: 'full-sentences', maxSeqLength: 128, crossDocuments }, special, new Random(1));
    const examples: Example[] = [];
    documents.forEach((document) => examples.push(...builder.addDocument(document)));
    examples.push(...builder.finish());
    const stream = examples.flatMap((example) => {
      assert.ok(example.tokens.length <= 128);
      assert.is(example.tokens[0], CLS);
      assert.is(example.tokens[example.tokens.length - 1], SEP);
      return realTokens(example);
    });
    assert.equal(stream, documents.flatMap((document) => document.flatMap((sentence) => Array.from(sentence))));
    const crossing = examples.filter((example) => new Set(realTokens(example)).size > 1).length;
    if (crossDocuments) assert.ok(crossing > 0);
    else assert.is(crossing, 0);
  }
});

test.run();
