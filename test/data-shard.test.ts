// Shard files: any size (read through a file descriptor, over 2 GiB too), and headers or indexes
// that disagree with the file are errors naming it, found before anything large is allocated.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SHARD_HEADER_BYTES, ShardWriter, readShard, shardBytesFor, shardFileName } from '../src/data/shard';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-shard-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function header(tokens: number, sentences: number, documents: number, firstDocument = 0): Buffer {
  const buffer = Buffer.alloc(SHARD_HEADER_BYTES);
  buffer.write('CBTSHRD1', 0, 'latin1');
  buffer.writeUInt32LE(2, 8);
  buffer.writeBigUInt64LE(BigInt(tokens), 16);
  buffer.writeBigUInt64LE(BigInt(sentences), 24);
  buffer.writeBigUInt64LE(BigInt(documents), 32);
  buffer.writeBigUInt64LE(BigInt(firstDocument), 40);
  return buffer;
}

test('a shard over 2 GiB reads back whole, with no second copy of the file in memory', () => {
  // Sparse: 2^30 + 2^20 uint16 tokens (2 GiB + 2 MiB), zeros but for marks past the 2 GiB offset.
  const tokens = 2 ** 30 + 2 ** 20;
  const sentences = 2;
  const file = path.join(tmp, 'huge.bin');
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header(tokens, sentences, 1), 0, SHARD_HEADER_BYTES, 0);
    const tokenEnd = SHARD_HEADER_BYTES + tokens * 2;
    fs.writeSync(fd, Buffer.from(Uint16Array.of(7, 8, 9).buffer), 0, 6, tokenEnd - 6);
    fs.writeSync(fd, Buffer.from(Uint32Array.of(0, 2 ** 30, tokens, 0, sentences).buffer), 0, 20, tokenEnd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    assert.ok(fs.statSync(file).size > 2 ** 31);
    const before = process.memoryUsage().rss;
    const shard = readShard(file);
    const grown = process.memoryUsage().rss - before;
    assert.is(shard.tokens.length, tokens);
    assert.equal(Array.from(shard.tokens.subarray(tokens - 3)), [7, 8, 9]);
    assert.is(shard.tokens[2 ** 30], 0);
    assert.equal(Array.from(shard.sentenceStarts), [0, 2 ** 30, tokens]);
    assert.equal(Array.from(shard.documentStarts), [0, sentences]);
    // readFileSync plus an aligned copy held the file twice (and failed at 2 GiB).
    assert.ok(grown < 1.25 * fs.statSync(file).size, `RSS grew ${(grown / 2 ** 30).toFixed(2)} GiB`);
  } finally {
    fs.rmSync(file, { force: true });
  }
});

test('a header or index that disagrees with the file is an error naming it, before allocating', () => {
  const file = path.join(tmp, shardFileName(0));
  const writer = new ShardWriter(file, 2, 0);
  writer.append(Int32Array.of(5, 6, 7, 8), Int32Array.of(2, 2), Int32Array.of(1, 1));
  const written = writer.finish();
  assert.is(fs.statSync(file).size, shardBytesFor(written));
  assert.equal(Array.from(readShard(file).tokens), [5, 6, 7, 8]);
  const bytes = fs.readFileSync(file);
  const variant = (name: string, edit: (copy: Buffer) => Buffer) => {
    const target = path.join(tmp, name);
    fs.writeFileSync(target, edit(Buffer.from(bytes)));
    return target;
  };
  // A header claiming 10^9 documents: refused from the file size, in no time and memory.
  const claims = variant('claims.bin', (copy) => { copy.writeBigUInt64LE(10n ** 9n, 32); return copy; });
  const started = Date.now();
  assert.throws(() => readShard(claims), /claims\.bin: \d+ bytes, the header implies \d+/);
  assert.ok(Date.now() - started < 1000);
  assert.throws(() => readShard(variant('truncated.bin', (copy) => copy.subarray(0, copy.length - 4))), /truncated\.bin: \d+ bytes, the header implies/);
  assert.throws(() => readShard(variant('magic.bin', (copy) => { copy.write('NOTSHARD', 0, 'latin1'); return copy; })), /magic\.bin is not a shard file/);
  // Sentence offsets 0, 2, 4 -> 0, 5, 4: decreasing, and past the token count.
  const sentenceIndex = SHARD_HEADER_BYTES + 8;
  assert.throws(() => readShard(variant('index.bin', (copy) => { copy.writeUInt32LE(5, sentenceIndex + 4); return copy; })), /index\.bin: the sentence index decreases at entry 2/);
  assert.throws(() => readShard(variant('span.bin', (copy) => { copy.writeUInt32LE(3, sentenceIndex + 8); return copy; })), /span\.bin: the sentence index does not span 0\.\.4/);
  assert.throws(() => readShard(variant('empty.bin', () => Buffer.alloc(0))), /empty\.bin is not a shard file/);
});

test('an abandoned writer leaves nothing behind; a finished one only the shard', () => {
  const dir = path.join(tmp, 'writers');
  fs.mkdirSync(dir);
  const abandoned = new ShardWriter(path.join(dir, shardFileName(0)), 2, 0);
  abandoned.append(Int32Array.of(1), Int32Array.of(1), Int32Array.of(1));
  abandoned.abandon();
  assert.equal(fs.readdirSync(dir), []);
  const finished = new ShardWriter(path.join(dir, shardFileName(1)), 4, 3);
  finished.append(Int32Array.of(70000), Int32Array.of(1), Int32Array.of(1));
  assert.equal(finished.finish(), { tokenWidth: 4, tokens: 1, sentences: 1, documents: 1, firstDocument: 3 });
  assert.equal(fs.readdirSync(dir), [shardFileName(1)]);
});

test.run();
