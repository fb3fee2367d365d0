// Trust no file: manifest.json is checked when read, every shard's header against it when the loader
// opens (from 64 bytes a shard, so lies about sizes are refused at once), and `prepare --verify`
// compares every shard's sha256.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { prepare } from '../src/data/prepare';
import { Manifest, readManifest } from '../src/data/manifest';
import { PretrainingLoader } from '../src/data/loader';
import { trainTokenizer } from '../src/tokenizer/train';
import { repoRoot } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-manifest-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const sample = path.join(repoRoot, 'data', 'demo', 'fr-demo.txt');
const cli = path.join(repoRoot, 'build', 'ts', 'src', 'prepare.js');
const prepared = path.join(tmp, 'prepared');

test.before(async () => {
  const { modelPath } = await trainTokenizer({ inputs: [sample], vocabSize: 200, outputDir: path.join(tmp, 'tokenizer'), threads: 1 });
  await prepare({ inputs: [sample], tokenizerPath: modelPath, outputDir: prepared, shardSizeMB: 0.002, threads: 1 });
});

/** A copy of the prepared directory, its manifest edited by `edit` (or replaced by a string). */
function variant(name: string, edit: ((manifest: Manifest) => void) | string): string {
  const dir = path.join(tmp, name);
  fs.cpSync(prepared, dir, { recursive: true });
  const file = path.join(dir, 'manifest.json');
  if (typeof edit === 'string') {
    fs.writeFileSync(file, edit);
  } else {
    const manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
    edit(manifest);
    fs.writeFileSync(file, JSON.stringify(manifest));
  }
  return dir;
}

function open(dataDir: string) {
  return PretrainingLoader.open({ dataDir, examples: { mode: 'electra', maxSeqLength: 32 }, batchSize: 2, seed: 1 });
}

test('a manifest that is not JSON, empty, or without a shard list: an error naming the file', () => {
  for (const [name, content, message] of [
    ['garbage', '{"format": "camemberta-sh', /garbage\/manifest\.json is not valid JSON/],
    ['empty', '', /empty\/manifest\.json is empty/],
    ['array', '[]', /array\/manifest\.json: expected a JSON object/],
    ['other-format', '{"format": "x", "formatVersion": 2}', /other-format\/manifest\.json: unsupported format x v2/],
    ['no-shards', JSON.stringify({ format: 'camemberta-shards', formatVersion: 2 }), /no-shards\/manifest\.json: no "shards" list/],
  ] as const) {
    assert.throws(() => open(variant(name, content)), message, name);
  }
});

test('counts the files cannot hold are refused from the sizes, at once', () => {
  const cases: [string, (m: Manifest) => void, RegExp][] = [
    ['billion', (m) => { m.counts.documents = 1e9; }, /billion\/manifest\.json: counts\.documents is 1000000000 but the shards hold \d+/],
    // The case: a shard's count halved (and the total with it) dropped half its documents.
    ['halved', (m) => {
      const half = m.shards[0].documents >> 1;
      m.shards[0].documents -= half;
      m.counts.documents -= half;
      for (const later of m.shards.slice(1)) later.firstDocument -= half;
      m.counts.heldOutDocuments -= m.shards[0].heldOutDocuments.length;
      m.shards[0].heldOutDocuments = [];
    },
      /halved\/shard-00000\.bin: its header and manifest\.json disagree on documents \(\d+ vs \d+\)/],
    ['tokens', (m) => { m.shards[1].tokens += 1e9; m.counts.tokens += 1e9; }, /tokens\/shard-00001\.bin: its header and manifest\.json disagree on tokens/],
    ['bytes', (m) => { m.shards[0].bytes += 8; }, /bytes\/shard-00000\.bin: \d+ bytes, manifest\.json says \d+/],
    ['traversal', (m) => { m.shards[0].file = '../../etc/passwd'; }, /shards\[0\]\.file "\.\.\/\.\.\/etc\/passwd" is not a shard file name/],
    ['gap', (m) => { m.shards[1].firstDocument += 1; }, /shards\[1\]\.firstDocument is \d+, the shards before it end at document \d+/],
    ['held-out', (m) => { m.shards[0].heldOutDocuments = [1e6]; }, /shards\[0\]\.heldOutDocuments is not an ascending list/],
  ];
  for (const [name, edit, message] of cases) {
    const started = Date.now();
    assert.throws(() => open(variant(name, edit)), message, name);
    assert.ok(Date.now() - started < 2000, `${name}: ${Date.now() - started} ms`);
  }
  // A shard whose own header claims more than the file holds.
  const dir = variant('header', () => {});
  const shard = path.join(dir, readManifest(dir).shards[0].file);
  const bytes = fs.readFileSync(shard);
  bytes.writeBigUInt64LE(10n ** 9n, 32);
  fs.writeFileSync(shard, bytes);
  assert.throws(() => open(dir), /header\/shard-00000\.bin: its header and manifest\.json disagree on documents \(1000000000 vs \d+\)/);
  assert.throws(() => open(variant('missing', (m) => { m.shards[0].file = 'shard-99999.bin'; })), /missing\/shard-99999\.bin, listed in .*manifest\.json, cannot be opened: ENOENT/);
  assert.ok(open(prepared).next().batchSize === 2);
});

test('prepare --verify: sizes, headers and sha256 of every shard; a changed byte is a one-line error', () => {
  const good = spawnSync(process.execPath, [cli, '--output', prepared, '--verify'], { encoding: 'utf8' });
  assert.is(good.status, 0, good.stderr);
  assert.match(good.stderr, new RegExp(`prepare\\.js: ${prepared}: \\d+ shards \\([\\d.]+ MB\\) match manifest\\.json: sizes, headers and sha256`));
  const dir = variant('flipped', () => {});
  const shard = path.join(dir, 'shard-00001.bin');
  const bytes = fs.readFileSync(shard);
  bytes[70] ^= 1; // a token id: the header and the size stay right
  fs.writeFileSync(shard, bytes);
  open(dir); // opening checks headers only
  const bad = spawnSync(process.execPath, [cli, '--output', dir, '--verify'], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /^prepare\.js: .*flipped\/shard-00001\.bin: sha256 [0-9a-f]{64}, manifest\.json says [0-9a-f]{64} \(the file changed after prepare wrote it\)\n$/);
  const usage = spawnSync(process.execPath, [cli, '--output', dir], { encoding: 'utf8' });
  assert.is(usage.status, 2);
  assert.is(usage.stderr, 'prepare.js: missing required options --input, --tokenizer (or --verify)\n');
});

test.run();
