// Data-parallel fine-tuning on CPU (Gloo over 127.0.0.1): 2 ranks started by launch.js, and by
// PyTorch's torchrun, end with one process's weights and scores (token classification and parsing,
// dropout off: dropout is the one thing ranks draw differently); only rank 0 writes and prints;
// ranks given different configs fail naming the key; a rank killed under srun-like variables makes
// the other fail with a DistributedError naming it, and under launch.js --max-restarts the run
// starts again; a rank's step leaks no tensor, its slice of the batch empty or not.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync, SpawnSyncReturns } from 'child_process';
import { tempDir } from './helpers/train';
import { repoRoot, pythonExecutable } from './helpers/python';
import { freePort } from './helpers/dist-ranks';
import { FINETUNE_JS, sequoiaSubset, microEncoder, runNodeScript, readResults } from './helpers/finetune';
import { readSafetensors, typedArrayOf } from '../src/io/safetensors';
import { loadFinetuneConfig, FinetuneConfig } from '../src/finetune/config';
import { finetune } from '../src/finetune/trainer';
import { DataParallel, singleProcess } from '../src/pretrain/parallel';
import { liveTensorCount } from '../src/tensor';

const LAUNCH_JS = path.join(repoRoot, 'dist', 'launch.js');
const root = tempDir('finetune-dist');

// The micro encoder with its dropout off (the classifier's follows hidden_dropout_prob).
const encoder = path.join(root, 'encoder');
fs.cpSync(microEncoder(root), encoder, { recursive: true });
const encoderConfig = JSON.parse(fs.readFileSync(path.join(encoder, 'config.json'), 'utf8'));
fs.writeFileSync(path.join(encoder, 'config.json'), JSON.stringify({ ...encoderConfig, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, null, 2));

// 41 sentences in batches of 8: each epoch has a batch of one sentence, of which rank 0's slice is
// empty; in the others the ranks' slices hold different numbers of labelled words, so a loss
// averaged per rank instead of over the global batch would not give one process's update.
const train = sequoiaSubset('train', 41, path.join(root, 'train.conllu'));
const dev = sequoiaSubset('dev', 15, path.join(root, 'dev.conllu'));
const testFile = sequoiaSubset('test', 15, path.join(root, 'test.conllu'));
const tokenArgs = ['--task', 'token-classification', '--model', encoder, '--train', train, '--dev', dev, '--test', testFile,
  '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--seed', '3', '--threads', '1', '--quiet', '--set', 'logging.every=1'];
const parseArgs = ['--task', 'dependency-parsing', '--model', encoder, '--train', train, '--dev', dev, '--test', testFile,
  '--epochs', '2', '--batch-size', '8', '--lr', '1e-3', '--seed', '3', '--threads', '1', '--quiet',
  '--set', 'parser.mlp_dropout=0', '--set', 'parser.arc_size=32', '--set', 'parser.rel_size=16'];
const rankEnv = { ...process.env, CAMEMBERTA_THREADS: '1' };

/** Largest |a - b| over the tensors of two safetensors files with the same keys. */
function maxDifference(fileA: string, fileB: string): number {
  const a = readSafetensors(fileA).tensors;
  const b = readSafetensors(fileB).tensors;
  assert.equal([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [name, x] of a) {
    assert.is(x.dtype, 'F32', name);
    const xs = typedArrayOf(x) as Float32Array;
    const ys = typedArrayOf(b.get(name)!) as Float32Array;
    for (let i = 0; i < xs.length; i++) worst = Math.max(worst, Math.abs(xs[i] - ys[i]));
  }
  return worst;
}

/** A script that runs finetune.js with extra arguments for some ranks (the launchers give all the same). */
function rankWrapper(name: string, extra: Record<number, string[]>): string {
  const file = path.join(root, `${name}.js`);
  fs.writeFileSync(file, `process.argv.splice(2, 0, ...(${JSON.stringify(extra)}[process.env.RANK] ?? []));\nrequire(${JSON.stringify(FINETUNE_JS)});\n`);
  return file;
}

function launch(script: string, args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [LAUNCH_JS, '--standalone', '--nproc-per-node', '2', script, ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 300_000, env: rankEnv });
}

const model = (run: string, file = 'model.safetensors') => path.join(run, 'model', file);
const reference = path.join(root, 'one');
const two = path.join(root, 'two');
const twoRank1Dir = path.join(root, 'two-rank1');
let twoOutput = '';

test('token classification: one process, the reference', () => {
  const result = runNodeScript(FINETUNE_JS, [...tokenArgs, '--output-dir', reference]);
  assert.is(result.status, 0, result.stderr);
  // The bound below is meaningful: fine-tuning moves the weights by far more than it.
  const initial = readSafetensors(path.join(encoder, 'model.safetensors')).tensors;
  const trained = readSafetensors(model(reference)).tensors;
  let moved = 0;
  for (const [name, x] of initial) {
    const xs = typedArrayOf(x) as Float32Array;
    const ys = typedArrayOf(trained.get(`deberta.${name}`)!) as Float32Array;
    for (let i = 0; i < xs.length; i++) moved = Math.max(moved, Math.abs(xs[i] - ys[i]));
  }
  assert.ok(moved > 1e-3, `fine-tuning moved the encoder's weights by ${moved}`);
});

test('2 ranks (launch.js) end with the weights, losses and scores of 1 process with the same global batch', () => {
  // Rank 1 is pointed at a directory of its own, to see that it writes nothing there.
  const result = launch(rankWrapper('own-dir', { 1: ['--set', `output_dir=${twoRank1Dir}`] }), [...tokenArgs, '--output-dir', two]);
  twoOutput = result.stdout + result.stderr;
  assert.is(result.status, 0, twoOutput);
  assert.match(twoOutput, /12 steps of 8 \(global, over 2 ranks\)/);
  const difference = maxDifference(model(reference), model(two));
  process.stdout.write(`  2 ranks: max |difference| from 1 process ${difference.toExponential(2)}\n`);
  assert.ok(difference <= 1e-5, `max |difference| ${difference}`);
  const [a, b] = [readResults(reference), readResults(two)];
  assert.equal([b.steps, b.best_epoch, b.dev.accuracy, b.test.accuracy], [a.steps, a.best_epoch, a.dev.accuracy, a.test.accuracy]);
  // Losses are the global batch's, as one process logs them: every step's, and the epochs' means.
  const losses = (run: string) => fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'loss' in l);
  const [la, lb] = [losses(reference), losses(two)];
  assert.equal(lb.map((l) => l.step), la.map((l) => l.step));
  la.forEach((l, i) => assert.ok(Math.abs(l.loss - lb[i].loss) <= 1e-5 * Math.max(1, l.loss), `step ${l.step}: ${l.loss} vs ${lb[i].loss}`));
  a.history.forEach((h: { loss: number }, i: number) => assert.ok(Math.abs(h.loss - b.history[i].loss) <= 1e-5, `epoch ${i + 1}`));
});

test('only rank 0 writes (results.json, model/, log.jsonl, tensorboard/) and prints', () => {
  assert.ok(twoOutput, 'the 2-rank run ran');
  for (const name of ['results.json', 'model', 'log.jsonl', 'tensorboard']) assert.ok(fs.existsSync(path.join(two, name)), name);
  assert.not.ok(fs.existsSync(twoRank1Dir), 'rank 1 created its output directory');
  assert.match(twoOutput, /\[rank 0\] finetune: best epoch/);
  assert.not.match(twoOutput, /\[rank 1\]/);
  // One line per logged step: a second writer would add its own.
  const steps = fs.readFileSync(path.join(two, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'loss' in l).map((l) => l.step);
  assert.equal(steps, [...new Set(steps)]);
});

test('PyTorch\'s torchrun --no-python starts the same run', () => {
  const torchrun = path.join(path.dirname(pythonExecutable()), 'torchrun');
  if (!fs.existsSync(torchrun)) throw new Error(`${torchrun} is missing: run scripts/setup.sh`);
  const run = path.join(root, 'torchrun');
  const result = spawnSync(torchrun, ['--no-python', '--standalone', '--nproc-per-node', '2', process.execPath, FINETUNE_JS, ...tokenArgs, '--output-dir', run],
    { cwd: repoRoot, encoding: 'utf8', timeout: 300_000, env: rankEnv });
  assert.is(result.status, 0, result.stdout + result.stderr);
  assert.ok(maxDifference(model(reference), model(run)) <= 1e-5);
  assert.is(readResults(run).test.accuracy, readResults(reference).test.accuracy);
});

test('dependency parsing on 2 ranks: the encoder and parser weights and the scores of 1 process', () => {
  const one = path.join(root, 'parse-one');
  const result = runNodeScript(FINETUNE_JS, [...parseArgs, '--output-dir', one]);
  assert.is(result.status, 0, result.stderr);
  const run = path.join(root, 'parse-two');
  const launched = launch(FINETUNE_JS, [...parseArgs, '--output-dir', run]);
  assert.is(launched.status, 0, launched.stdout + launched.stderr);
  for (const file of ['model.safetensors', 'parser_head.safetensors']) {
    const difference = maxDifference(model(one, file), model(run, file));
    assert.ok(difference <= 1e-5, `${file}: max |difference| ${difference}`);
  }
  const [a, b] = [readResults(one), readResults(run)];
  assert.equal([b.dev.las, b.dev.uas, b.test.las, b.best_epoch], [a.dev.las, a.dev.uas, a.test.las, a.best_epoch]);
});

test('ranks given different configs fail with the differing key, exit code 2, nothing written', () => {
  const run = path.join(root, 'mismatch');
  const result = launch(rankWrapper('other-lr', { 1: ['--set', 'lr=0.5'] }), [...tokenArgs, '--output-dir', run]);
  assert.is(result.status, 2, result.stdout + result.stderr);
  assert.match(result.stdout + result.stderr, /flags: the ranks were given different configs: rank 1 differs from rank 0 in lr\b/);
  assert.not.ok(fs.existsSync(path.join(run, 'results.json')));
});

test('a rank killed mid-run (srun\'s variables, no launcher): the other fails with a DistributedError naming it', async () => {
  const run = path.join(root, 'killed');
  const port = String(await freePort());
  const args = [...tokenArgs, '--output-dir', run, '--set', 'epochs=1000', '--set', 'distributed.timeout_s=20'];
  const ranks = [0, 1].map((rank) => {
    const env: NodeJS.ProcessEnv = {
      ...rankEnv, SLURM_JOB_ID: '7', SLURM_STEP_ID: '0', SLURM_PROCID: String(rank), SLURM_LOCALID: String(rank), SLURM_NODEID: '0',
      SLURM_NTASKS: '2', SLURM_NTASKS_PER_NODE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port,
    };
    for (const name of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK']) delete env[name];
    const child = spawn(process.execPath, [FINETUNE_JS, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += chunk; });
    const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
    return { child, exited };
  });
  const deadline = Date.now() + 240_000;
  try {
    // Killed once training has logged steps.
    while (!fs.existsSync(path.join(run, 'log.jsonl')) || fs.statSync(path.join(run, 'log.jsonl')).size === 0) {
      if (Date.now() > deadline) throw new Error('the ranks never started training');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    ranks[1].child.kill('SIGKILL');
    const started = Date.now();
    const zero = await ranks[0].exited;
    assert.is(zero.code, 1, zero.stderr);
    assert.ok(Date.now() - started < 60_000, `${Date.now() - started} ms`);
    assert.match(zero.stderr, /finetune\.js: rank 0: camemberta\.dist: .*rank 1\b/);
    assert.not.ok(zero.stderr.includes('    at '), 'no stack trace');
  } finally {
    for (const { child } of ranks) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('--max-restarts 1: the ranks restarted after one was killed start the run again and finish it', async () => {
  const run = path.join(root, 'restart');
  const child = spawn(process.execPath, [LAUNCH_JS, '--standalone', '--nproc-per-node', '2', '--max-restarts', '1', FINETUNE_JS, ...tokenArgs, '--output-dir', run, '--set', 'epochs=20'],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: rankEnv });
  let output = '';
  child.stdout!.on('data', (chunk) => { output += chunk; });
  child.stderr!.on('data', (chunk) => { output += chunk; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const timeout = setTimeout(() => child.kill('SIGKILL'), 240_000);
  let killed = false;
  const poll = setInterval(() => {
    const log = path.join(run, 'log.jsonl');
    if (killed || !fs.existsSync(log) || fs.statSync(log).size === 0) return;
    const pids = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
    if (pids.length < 2) return;
    killed = true;
    process.kill(pids[pids.length - 1], 'SIGKILL');
  }, 20);
  const code = await exited;
  clearInterval(poll);
  clearTimeout(timeout);
  assert.ok(killed, `no rank was killed: ${output}`);
  assert.is(code, 0, output);
  assert.match(output, /restarting the 2 local rank\(s\): restart 1 of 1/);
  // The restarted attempt replaced the killed one's files with a whole run.
  assert.is(readResults(run).steps, 20 * 6);
});

/** One rank of `worldSize` as the trainer sees it, in this process: no peers, every collective a no-op. */
function pretendRank(rank: number, worldSize: number): DataParallel<FinetuneConfig> {
  return { ...singleProcess, rank, worldSize };
}

test('a rank\'s step leaks no tensor, whether its slice of the batch is empty (rank 0 of 2, batches of 1) or not (rank 1)', async () => {
  // One sentence 12 times: every batch has the same length, so the encoder's per-length
  // relative-position tables are all made in the first step and the count can be flat.
  const sentence = fs.readFileSync(train, 'utf8').split('\n\n')[0];
  const sameLength = path.join(root, 'same-length.conllu');
  fs.writeFileSync(sameLength, `${Array(12).fill(sentence).join('\n\n')}\n\n`);
  for (const rank of [0, 1]) {
    const config = loadFinetuneConfig(undefined, {
      task: 'token-classification', model: encoder, train: sameLength, dev, output_dir: path.join(root, `leak-${rank}`), epochs: 2, batch_size: 1, threads: 1,
      'logging.progress': false, 'logging.tensorboard': false, 'logging.every': 1,
    });
    const counts: number[] = [];
    const results = await finetune({ config, log: () => {}, parallel: pretendRank(rank, 2), onStep: () => counts.push(liveTensorCount()) });
    assert.is(results.steps, 24);
    // Steps 2..12 of epoch 1, and the same step of both epochs (the best epoch's snapshot is taken once, after epoch 1).
    const epoch = counts.slice(1, 12);
    assert.ok(epoch.every((n) => n === epoch[0]), `rank ${rank}: ${epoch.join(', ')}`);
    assert.is(counts[13], counts[23], `rank ${rank}: later steps ${counts[13]}, ${counts[23]}`);
  }
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));

test.run();
