import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess, spawn, spawnSync } from 'child_process';
import { trainTokenizer } from '../src/tokenizer/train';
import { Manifest } from '../src/data/prepare';
import { isUnfinishedShardFile, readShard } from '../src/data/shard';
import { repoRoot, runPython, pythonScript } from './helpers/python';

const corpusDir = path.join(repoRoot, '..', 'shared', 'data', 'fr-roman19');
const corpusFiles = fs.readdirSync(corpusDir).filter((name) => name.endsWith('.txt')).sort().map((name) => path.join(corpusDir, name));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-prepare-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const cli = path.join(repoRoot, 'build', 'ts', 'src', 'prepare.js');
const tokenizerDir = path.join(tmp, 'tokenizer');
const model = path.join(tokenizerDir, 'spm.model');
const cleanDir = path.join(tmp, 'clean');
const SHARD_MB = '1';

function runPrepare(output: string, extra: string[] = []): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [cli, '--input', corpusDir, '--tokenizer', model, '--output', output, '--shard-size-mb', SHARD_MB, ...extra], { encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr };
}

function readManifestAt(dir: string): Manifest {
  return JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
}

test.before(async () => {
  await trainTokenizer({ inputs: corpusFiles.slice(0, 4), vocabSize: 8000, outputDir: tokenizerDir, threads: 2 });
});

test('prepare runs over the whole of fr-roman19; the manifest counts match an independent count', () => {
  const started = Date.now();
  const result = runPrepare(cleanDir);
  assert.is(result.status, 0, result.stderr);
  const seconds = (Date.now() - started) / 1000;
  const manifest = readManifestAt(cleanDir);
  // Independent count: documents are runs of non-blank lines; sentences are ICU sentences of each
  // trimmed line; tokens are what Python sentencepiece gives those sentences.
  let documents = 0;
  const sentences: string[] = [];
  const segmenter = new Intl.Segmenter('fr', { granularity: 'sentence' });
  let bytes = 0;
  for (const file of corpusFiles) {
    const text = fs.readFileSync(file, 'utf8');
    bytes += fs.statSync(file).size;
    documents += text.split(/\n[ \t\r\u00a0]*\n/).filter((block) => block.trim() !== '').length;
    for (const line of text.split('\n')) {
      for (const { segment } of segmenter.segment(line.trim())) if (segment.trim()) sentences.push(segment.trim());
    }
  }
  const sentencesPath = path.join(tmp, 'sentences.txt');
  fs.writeFileSync(sentencesPath, sentences.join('\n'));
  const python = runPython([pythonScript('spm_reference.py'), 'encode', model, sentencesPath], { timeoutMs: 300_000 }).stdout.split('\n');
  const pythonTokens = sentences.reduce((sum, _, i) => sum + (python[i] ? python[i].split(' ').length : 0), 0);
  assert.is(manifest.counts.files, corpusFiles.length);
  assert.is(manifest.counts.inputBytes, bytes);
  assert.is(manifest.counts.documents, documents);
  assert.is(manifest.counts.sentences, sentences.length);
  assert.is(manifest.counts.tokens, pythonTokens);
  assert.is(manifest.counts.invalidUtf8Replacements, 0);
  assert.is(manifest.tokenizer.tokenWidth, 2);
  assert.equal(manifest.tokenizer.specialTokens, { unk: 3, pad: 0, cls: 1, sep: 2, mask: 8000 });
  assert.ok(manifest.counts.shards >= 20, `${manifest.counts.shards} shards`);
  // The shards hold, sentence by sentence, the ids Python gives (up to exact ties, see tokenizer.test).
  let sentence = 0;
  let differing = 0;
  let documentsInShards = 0;
  for (const entry of manifest.shards) {
    const shard = readShard(path.join(cleanDir, entry.file));
    assert.is(shard.header.firstDocument, documentsInShards);
    documentsInShards += shard.header.documents;
    for (let s = 0; s < shard.header.sentences; s++, sentence++) {
      const ids = Array.from(shard.tokens.subarray(shard.sentenceStarts[s], shard.sentenceStarts[s + 1])).join(' ');
      if (ids !== python[sentence]) differing += 1;
    }
  }
  assert.is(sentence, sentences.length);
  assert.ok(differing <= sentences.length / 1000, `${differing} sentences differ from Python`);
  process.stderr.write(`    (whole fr-roman19: ${seconds.toFixed(1)} s, ${manifest.counts.tokens} tokens, ${differing} tie sentences)\n`);
});

function waitForShards(dir: string, count: number, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const done = fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => /^shard-\d+\.bin$/.test(name)).length : 0;
      if (done >= count) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
    child.once('exit', () => {
      clearInterval(timer);
      reject(new Error('prepare finished before it could be interrupted'));
    });
  });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

test('interrupted by SIGINT, then SIGKILL, then run again: byte-identical shards', async () => {
  const dir = path.join(tmp, 'interrupted');
  const args = [cli, '--input', corpusDir, '--tokenizer', model, '--output', dir, '--shard-size-mb', SHARD_MB, '--threads', '1'];
  let stderr = '';
  const first = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  first.stderr!.on('data', (chunk) => { stderr += chunk; });
  await waitForShards(dir, 3, first);
  const firstExit = exitOf(first);
  first.kill('SIGINT');
  const interrupted = await firstExit;
  assert.is(interrupted.code, 130, stderr);
  assert.match(stderr, /interrupted; finished shards are kept/);
  const kept = fs.readdirSync(dir).filter((name) => /^shard-\d+\.bin$/.test(name)).length;

  const second = spawn(process.execPath, args, { stdio: 'ignore' });
  await waitForShards(dir, kept + 3, second);
  const secondExit = exitOf(second);
  second.kill('SIGKILL');
  assert.is((await secondExit).signal, 'SIGKILL');
  assert.not.ok(fs.existsSync(path.join(dir, 'manifest.json')));

  const third = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.is(third.status, 0, third.stderr);
  const resumed = readManifestAt(dir);
  const clean = readManifestAt(cleanDir);
  assert.ok(resumed.counts.shardsReused >= kept + 3, `${resumed.counts.shardsReused} shards reused`);
  assert.equal(resumed.counts.tokens, clean.counts.tokens);
  assert.equal(fs.readdirSync(dir).filter((name) => isUnfinishedShardFile(name)), []);
  for (const entry of clean.shards) {
    assert.ok(fs.readFileSync(path.join(dir, entry.file)).equals(fs.readFileSync(path.join(cleanDir, entry.file))), entry.file);
  }
  assert.equal(resumed.shards, clean.shards);
});

test('bad input and changed settings end with one clean line and exit code 2', () => {
  const binary = path.join(tmp, 'bad', 'data.txt');
  fs.mkdirSync(path.dirname(binary), { recursive: true });
  fs.writeFileSync(binary, Buffer.from([0x41, 0x00, 0x42]));
  const bad = spawnSync(process.execPath, [cli, '--input', binary, '--tokenizer', model, '--output', path.join(tmp, 'bad-out')], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.ok(bad.stderr.includes(`${binary} looks binary`), bad.stderr);
  assert.not.match(bad.stderr, /\n\s+at /);
  const changed = runPrepare(cleanDir, ['--docs-per-line']);
  assert.is(changed.status, 2);
  assert.match(changed.stderr, /holds shards prepared with other inputs, tokenizer or settings/);
  const missing = spawnSync(process.execPath, [cli, '--input', path.join(tmp, 'nothing'), '--tokenizer', model, '--output', path.join(tmp, 'o')], { encoding: 'utf8' });
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /cannot read input .*nothing: no such file or directory/);
});

test.run();
