// prepare under hostile input (issue 13, item 9): damaged shards from an earlier run are written
// again, not reused; --threads beyond the cores is clamped; FIFOs are skipped or refused; lines
// without newlines (plain, JSONL, gzip) are read in linear time with bounded documents.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { gzipSync } from 'zlib';
import { spawnSync } from 'child_process';
import { prepare } from '../src/data/prepare';
import { CorpusError, emptyCorpusStats, listCorpusFiles, readCorpus } from '../src/corpus/read';
import { trainTokenizer } from '../src/tokenizer/train';
import { repoRoot } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-hostile-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const sample = path.join(repoRoot, 'data', 'demo', 'fr-demo.txt');
let tokenizerPath = '';

test.before(async () => {
  tokenizerPath = (await trainTokenizer({ inputs: [sample], vocabSize: 200, outputDir: path.join(tmp, 'tokenizer'), threads: 1 })).modelPath;
});

test('a rerun writes again the shards that were truncated or changed since, and reuses the others', async () => {
  const out = path.join(tmp, 'resumed');
  const options = { inputs: [sample], tokenizerPath, outputDir: out, shardSizeMB: 0.001, threads: 1 };
  const clean = await prepare(options);
  assert.ok(clean.counts.shards >= 4, `${clean.counts.shards} shards`);
  const [, truncated, edited] = clean.shards.map((shard) => path.join(out, shard.file));
  fs.truncateSync(truncated, fs.statSync(truncated).size - 8);
  const bytes = fs.readFileSync(edited);
  bytes[80] ^= 1;
  fs.writeFileSync(edited, bytes);
  fs.rmSync(path.join(out, 'manifest.json')); // as a killed run leaves it
  const warnings: string[] = [];
  const resumed = await prepare({ ...options, onWarning: (message) => warnings.push(message) });
  assert.is(resumed.counts.shardsReused, clean.counts.shards - 2);
  assert.ok(warnings.some((w) => w.startsWith(`${truncated}: `) && w.includes('bytes') && w.endsWith('writing it again')), warnings.join('\n'));
  assert.ok(warnings.some((w) => w === `${edited}: its sha256 changed since it was written; writing it again`), warnings.join('\n'));
  assert.equal(resumed.shards, clean.shards);
  // Shards without a record (an older version's, or the journal lost) are not trusted either.
  fs.rmSync(path.join(out, 'prepare-shards.json'));
  const unrecorded = await prepare(options);
  assert.is(unrecorded.counts.shardsReused, 0);
  assert.equal(unrecorded.shards, clean.shards);
});

test('--threads 500: clamped to the cores, with a warning', async () => {
  const warnings: string[] = [];
  const manifest = await prepare({ inputs: [sample], tokenizerPath, outputDir: path.join(tmp, 'threads'), threads: 500, onWarning: (m) => warnings.push(m) });
  assert.ok(manifest.counts.tokens > 0);
  assert.equal(warnings, [`500 threads asked for, ${os.availableParallelism()} used: this machine has ${os.availableParallelism()} cores`]);
});

test('a FIFO in an input directory is skipped; named as an input it is refused', () => {
  const dir = path.join(tmp, 'fifo');
  fs.mkdirSync(dir);
  fs.copyFileSync(sample, path.join(dir, 'a.txt'));
  const fifo = path.join(dir, 'b.txt');
  const made = spawnSync('mkfifo', [fifo]);
  assert.is(made.status, 0, String(made.stderr));
  assert.equal(listCorpusFiles([dir]), [path.join(dir, 'a.txt')]);
  assert.throws(() => listCorpusFiles([fifo]), (error: Error) => error instanceof CorpusError && error.message === `${fifo} is not a regular file or a directory (a FIFO, socket or device): the corpus must be files`);
});

async function readAll(file: string, options = {}) {
  const stats = emptyCorpusStats();
  let longest = 0;
  let documents = 0;
  const started = process.hrtime.bigint();
  for await (const document of readCorpus([file], stats, options)) {
    documents += 1;
    longest = Math.max(longest, document.lines.reduce((sum, line) => sum + line.length, 0));
  }
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, documents, longest, stats };
}

test('a line without a newline (plain, JSONL, gzip): linear time, bounded documents', async () => {
  // A quadratic reader takes 4x as long for twice the line; a linear one 2x.
  for (const kind of ['plain', 'jsonl', 'gzip'] as const) {
    const perMB: number[] = [];
    for (const mb of [20, 40]) {
      // Built from one 1 MB buffer: no 40 MB string in this process to skew the timing.
      const words = Buffer.from('mot '.repeat(250_000));
      const body = Buffer.concat([Buffer.from(kind === 'jsonl' ? '{"text": "' : ''), ...Array.from({ length: mb }, () => words), Buffer.from(kind === 'jsonl' ? '"}' : '')]);
      const file = path.join(tmp, `line.${kind === 'jsonl' ? 'jsonl' : kind === 'gzip' ? 'txt.gz' : 'txt'}`);
      fs.writeFileSync(file, kind === 'gzip' ? gzipSync(body) : body);
      (globalThis as { gc?: () => void }).gc?.();
      const first = await readAll(file, { maxDocumentChars: 2_000_000 });
      const { documents, longest, stats, seconds } = await readAll(file, { maxDocumentChars: 2_000_000 });
      const best = Math.min(first.seconds, seconds);
      perMB.push(best / mb);
      // Cut once it reaches 2 M characters: at most one 100,000-character line over.
      assert.ok(documents >= mb / 2 - 1 && documents <= mb / 2 + 1, `${kind} ${mb} MB: ${documents} documents`);
      assert.ok(longest <= 2_100_000, `${kind}: a document of ${longest} characters`);
      assert.ok(stats.longDocumentSplits >= documents - 1, `${stats.longDocumentSplits} cuts`);
      fs.rmSync(file);
    }
    process.stderr.write(`    (${kind}: ${(perMB[0] * 1e3).toFixed(1)} ms/MB at 20 MB, ${(perMB[1] * 1e3).toFixed(1)} at 40 MB)\n`);
    assert.ok(perMB[1] < 1.6 * perMB[0], `${kind}: ${perMB.map((t) => (t * 1e3).toFixed(1)).join(' -> ')} ms/MB`);
  }
});

test.run();
