// Two prepare runs into one output directory: the second fails at once naming the directory and the
// holder, and the first's output is untouched. A lock left by a dead process is taken over.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { prepare, readManifest } from '../src/data/prepare';
import { lockDirectory } from '../src/data/output-lock';
import { trainTokenizer } from '../src/tokenizer/train';
import { repoRoot } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-lock-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const sample = path.join(repoRoot, 'data', 'demo', 'fr-demo.txt');
const cli = path.join(repoRoot, 'build', 'ts', 'src', 'prepare.js');
let tokenizerPath = '';

test.before(async () => {
  tokenizerPath = (await trainTokenizer({ inputs: [sample], vocabSize: 200, outputDir: path.join(tmp, 'tokenizer'), threads: 1 })).modelPath;
});

const options = (outputDir: string) => ({ inputs: [sample], tokenizerPath, outputDir, shardSizeMB: 0.001, threads: 1 });

test('concurrent prepare runs into one directory: one finishes, the other fails naming the holder', async () => {
  const out = path.join(tmp, 'concurrent');
  const results = await Promise.allSettled([prepare(options(out)), prepare(options(out)), prepare(options(out))]);
  const done = results.filter((r) => r.status === 'fulfilled');
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.is(done.length, 1, JSON.stringify(failed.map((r) => String(r.reason))));
  for (const failure of failed) {
    assert.match(String(failure.reason.message), `${out} is in use by another prepare run (pid ${process.pid} on ${os.hostname()}, since `);
    assert.match(String(failure.reason.message), `delete ${path.join(out, '.lock')} if that run is gone`);
  }
  const manifest = readManifest(out);
  assert.ok(manifest.counts.shards > 1);
  for (const shard of manifest.shards) assert.is(fs.statSync(path.join(out, shard.file)).size, shard.bytes);
  // Released: the directory holds no lock and a new run reuses everything.
  assert.not.ok(fs.existsSync(path.join(out, '.lock')));
  assert.is((await prepare(options(out))).counts.shardsReused, manifest.counts.shards);
});

test('the CLI: a held lock is a one-line error with exit 2; a dead holder\'s lock is taken over', () => {
  const out = path.join(tmp, 'cli');
  fs.mkdirSync(out);
  const lock = lockDirectory(out, 'prepare');
  const args = [cli, '--input', sample, '--tokenizer', tokenizerPath, '--output', out, '--quiet', '--threads', '1'];
  const blocked = spawnSync(process.execPath, args, { encoding: 'utf8' });
  lock.release();
  assert.is(blocked.status, 2, blocked.stderr);
  assert.is(blocked.stderr.split('\n').length, 2, blocked.stderr);
  assert.match(blocked.stderr, `prepare.js: ${out} is in use by another prepare run (pid ${process.pid}`);
  assert.not.ok(fs.existsSync(path.join(out, 'manifest.json')));
  // A lock whose process has exited, as a killed run leaves it.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  fs.writeFileSync(path.join(out, '.lock'), JSON.stringify({ pid: Number(dead.stdout), host: os.hostname(), since: 'then', purpose: 'prepare' }));
  const resumed = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.is(resumed.status, 0, resumed.stderr);
  assert.ok(fs.existsSync(path.join(out, 'manifest.json')));
  assert.not.ok(fs.existsSync(path.join(out, '.lock')));
});

test.run();
