// Data-parallel pretraining on CPU (Gloo over 127.0.0.1): 2 ranks end where 1 process with the same
// global batch ends; a checkpoint of 2 ranks resumes on 1 and the reverse; PyTorch's own torchrun
// starts the same run; a rank killed after a checkpoint is restarted by --max-restarts and the run
// ends where an uninterrupted one does; a rank that dies or hangs ends the run with an error, not a hang.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync, SpawnSyncReturns } from 'child_process';
import { microConfig, tempDir, writeConfig, runTrain, TRAIN_JS, DEMO_TEXT } from './helpers/train';
import { repoRoot, pythonExecutable } from './helpers/python';
import { readSafetensors, typedArrayOf } from '../src/io/safetensors';

const LAUNCH_JS = path.join(repoRoot, 'dist', 'launch.js');
const STEPS = 8;
const root = tempDir('train-dist');
// Dropout stays on: its draws are seeded per micro-batch, like masking and sampling, so they do not
// depend on the number of ranks either.
const configFile = writeConfig(root, microConfig(path.join(root, 'unused'), {
  batch: { global_batch_size: 8, micro_batch_size: 2 },
  max_steps: STEPS,
  // The schedule's length is fixed, so that a run stopped early by --max-steps continues on the same schedule.
  schedule: { warmup_steps: 2, total_steps: STEPS },
  checkpoint: { every: 2, keep: 10 },
  eval: { every: 4, batches: 1 },
  distributed: { timeout_s: 15 },
}));
const reference = path.join(root, 'reference');
const prepared = path.join(reference, 'data');

const checkpointOf = (run: string, step: number) => path.join(run, 'checkpoints', `step-${String(step).padStart(8, '0')}`);

function maxDifference(runA: string, runB: string, step = STEPS): number {
  const difference = maxDifferenceBetween(checkpointOf(runA, step), checkpointOf(runB, step));
  process.stdout.write(`  ${path.basename(runB)}: max |difference| from ${path.basename(runA)} ${difference.toExponential(2)}\n`);
  return difference;
}

function maxDifferenceBetween(checkpointA: string, checkpointB: string): number {
  const a = readSafetensors(path.join(checkpointA, 'model.safetensors')).tensors;
  const b = readSafetensors(path.join(checkpointB, 'model.safetensors')).tensors;
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

function trainArgs(run: string, extra: string[] = []): string[] {
  return ['--config', configFile, '--data', prepared, '--output-dir', run, ...extra];
}

function launch(nproc: number, run: string, extra: string[] = [], launcherFlags: string[] = []): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [LAUNCH_JS, '--standalone', '--nproc-per-node', String(nproc), ...launcherFlags, TRAIN_JS, ...trainArgs(run, extra)],
    { cwd: repoRoot, encoding: 'utf8', timeout: 180_000, env: { ...process.env, CAMEMBERTA_THREADS: '1' } });
}

test('one process: the reference run', () => {
  const result = runTrain(['--config', configFile, '--data', DEMO_TEXT, '--output-dir', reference]);
  assert.is(result.status, 0, result.stderr);
  // The bound below is meaningful: training moves the weights by far more than it.
  const moved = maxDifferenceBetween(checkpointOf(reference, 2), checkpointOf(reference, STEPS));
  assert.ok(moved > 1e-3, `steps 2 -> ${STEPS} moved the weights by ${moved}`);
});

test('2 ranks end with the weights of 1 process with the same global batch', () => {
  const run = path.join(root, 'two');
  const result = launch(2, run);
  assert.is(result.status, 0, result.stdout + result.stderr);
  assert.match(result.stdout + result.stderr, /\[rank 1\]/);
  assert.match(result.stdout + result.stderr, /2 x 2 accumulation x 2 rank\(s\)/);
  const difference = maxDifference(reference, run);
  assert.ok(difference <= 1e-5, `max |difference| ${difference}`);
  // Only rank 0 writes: one log line per logged step.
  const lines = fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const steps = lines.filter((l) => 'loss' in l).map((l) => l.step);
  assert.equal(steps, [...new Set(steps)]);
  // The logged figures are the global batch's, as one process logs them.
  const referenceLines = fs.readFileSync(path.join(reference, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const at = (rows: Record<string, number>[], step: number) => rows.find((r) => r.step === step && 'loss' in r)!;
  for (const key of ['loss', 'gen_loss', 'disc_loss', 'gen_accuracy', 'replaced_fraction']) {
    assert.ok(Math.abs(at(lines, STEPS)[key] - at(referenceLines, STEPS)[key]) <= 1e-4 * Math.max(1, Math.abs(at(referenceLines, STEPS)[key])), key);
  }
});

test('a checkpoint of 2 ranks resumes on 1 rank, and one of 1 rank on 2, to the same weights', () => {
  const twoThenOne = path.join(root, 'two-then-one');
  let result = launch(2, twoThenOne, ['--max-steps', '4']);
  assert.is(result.status, 0, result.stdout + result.stderr);
  result = runTrain(trainArgs(twoThenOne, ['--resume', 'auto']));
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stderr, /resumed from .*step-00000004/);
  assert.ok(maxDifference(reference, twoThenOne) <= 1e-5, 'two then one');

  const oneThenTwo = path.join(root, 'one-then-two');
  result = runTrain(trainArgs(oneThenTwo, ['--max-steps', '4']));
  assert.is(result.status, 0, result.stderr);
  result = launch(2, oneThenTwo, ['--resume', 'auto']);
  assert.is(result.status, 0, result.stdout + result.stderr);
  assert.ok(maxDifference(reference, oneThenTwo) <= 1e-5, 'one then two');
});

test('a time budget (max_seconds) ends every rank at the same step, and the run exports', () => {
  const run = path.join(root, 'budget');
  const result = launch(2, run, ['--max-seconds', '2', '--max-steps', '100000', '--set', 'schedule.total_steps=100000', '--save-every', '0']);
  assert.is(result.status, 0, result.stdout + result.stderr);
  assert.match(result.stdout + result.stderr, /time budget .* is spent at step \d+/);
  assert.ok(fs.existsSync(path.join(run, 'export', 'discriminator', 'model.safetensors')));
});

test('PyTorch\'s torchrun --no-python starts the same run', () => {
  const torchrun = path.join(path.dirname(pythonExecutable()), 'torchrun');
  if (!fs.existsSync(torchrun)) throw new Error(`${torchrun} is missing: run scripts/setup.sh`);
  const run = path.join(root, 'torchrun');
  const result = spawnSync(torchrun, ['--no-python', '--standalone', '--nproc-per-node', '2', process.execPath, TRAIN_JS, ...trainArgs(run)],
    { cwd: repoRoot, encoding: 'utf8', timeout: 180_000, env: { ...process.env, CAMEMBERTA_THREADS: '1' } });
  assert.is(result.status, 0, result.stdout + result.stderr);
  assert.ok(maxDifference(reference, run) <= 1e-5);
});

/** Starts the launcher on `run`; calls `act(rankPids)` once `ready()` holds; resolves with the exit code and output. */
function launchAndAct(run: string, launcherFlags: string[], ready: () => boolean, act: (pids: number[]) => void, extra: string[] = []):
  Promise<{ code: number | null; output: string; seconds: number; actedAt: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LAUNCH_JS, '--standalone', '--nproc-per-node', '2', ...launcherFlags, TRAIN_JS, ...trainArgs(run, extra)],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAMEMBERTA_THREADS: '1' } });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    const started = Date.now();
    let actedAt = -1;
    const poll = setInterval(() => {
      if (actedAt < 0 && ready()) {
        const pids = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
        if (pids.length < 2) return;
        actedAt = Date.now();
        act(pids);
      }
    }, 20);
    const timeout = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timeout);
      resolve({ code, output, seconds: (Date.now() - (actedAt > 0 ? actedAt : started)) / 1000, actedAt });
    });
  });
}

test('--max-restarts 1: a rank killed after a checkpoint is restarted and the run ends with the uninterrupted weights', async () => {
  const run = path.join(root, 'restart');
  const result = await launchAndAct(run, ['--max-restarts', '1'], () => fs.existsSync(checkpointOf(run, 2)),
    (pids) => process.kill(pids[pids.length - 1], 'SIGKILL'));
  assert.ok(result.actedAt > 0, 'a rank was killed');
  assert.is(result.code, 0, result.output);
  assert.match(result.output, /resumed from .*step-/);
  assert.ok(maxDifference(reference, run) <= 1e-5);
});

test('a rank killed mid-run (no restarts) makes the launcher and the other rank exit non-zero within 60 s', async () => {
  const run = path.join(root, 'killed');
  const result = await launchAndAct(run, [], () => fs.existsSync(path.join(run, 'log.jsonl')),
    (pids) => process.kill(pids[pids.length - 1], 'SIGKILL'), ['--max-steps', '400', '--set', 'schedule.total_steps=400']);
  assert.ok(result.actedAt > 0, 'a rank was killed');
  assert.ok(result.code !== 0, result.output);
  assert.ok(result.seconds < 60, `${result.seconds} s`);
});

test('a rank that stops answering (SIGSTOP) ends the run within the configured timeout', async () => {
  const run = path.join(root, 'stopped');
  let stopped = -1;
  const result = await launchAndAct(run, ['--grace-period', '2'], () => fs.existsSync(path.join(run, 'log.jsonl')),
    (pids) => { stopped = pids[pids.length - 1]; process.kill(stopped, 'SIGSTOP'); }, ['--max-steps', '400', '--set', 'schedule.total_steps=400', '--set', 'distributed.timeout_s=5']);
  assert.ok(result.actedAt > 0, 'a rank was stopped');
  assert.ok(result.code !== 0, result.output);
  assert.ok(result.seconds < 5 + 30, `${result.seconds} s`);
  assert.match(result.output, /rank 0.*(timed out|timeout|did not answer|rank 1)/i);
  try { process.kill(stopped, 'SIGKILL'); } catch { /* gone */ }
});

test('ranks given different configs fail with the differing keys, exit code 2', () => {
  // Rank 1 gets another learning rate and step count through its own argument list: the launcher
  // passes the same arguments to all, so a wrapper script varies them by RANK. max_steps may change
  // on resume, but not between ranks (they would wait on each other's collectives).
  const wrapper = path.join(root, 'wrapper.js');
  fs.writeFileSync(wrapper, `process.argv.splice(2, 0, ...(process.env.RANK === '1' ? ['--set', 'optimizer.lr=0.5', '--max-steps', '3'] : []));\nrequire(${JSON.stringify(TRAIN_JS)});\n`);
  const run = path.join(root, 'mismatch');
  const result = spawnSync(process.execPath, [LAUNCH_JS, '--standalone', '--nproc-per-node', '2', wrapper, ...trainArgs(run)],
    { cwd: repoRoot, encoding: 'utf8', timeout: 120_000, env: { ...process.env, CAMEMBERTA_THREADS: '1' } });
  assert.ok(result.status !== 0);
  assert.match(result.stdout + result.stderr, /rank 1 differs from rank 0 in [^\n]*optimizer\.lr/);
  assert.match(result.stdout + result.stderr, /rank 1 differs from rank 0 in [^\n]*max_steps/);
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));

test.run();
