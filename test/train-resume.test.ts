// Interrupted runs resume to the same bits: a run stopped by SIGINT (checkpoint on the way out) and
// one killed by SIGKILL after a checkpoint, each continued with --resume auto, end with weights and
// optimizer state byte-identical to an uninterrupted run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { microConfig, tempDir, writeConfig, runTrain, TRAIN_JS, DEMO_TEXT } from './helpers/train';
import { repoRoot } from './helpers/python';
import { loadTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';
import { readMetricsLog } from '../src/pretrain/metrics-log';

const root = tempDir('train-resume');
const STEPS = 12;
const finalCheckpoint = (run: string) => path.join(run, 'checkpoints', `step-${String(STEPS).padStart(8, '0')}`);
const bytesOf = (run: string, file: string) => fs.readFileSync(path.join(finalCheckpoint(run), file));

let reference = '';
let configFile = '';

test('an uninterrupted run', async () => {
  reference = path.join(root, 'reference');
  configFile = writeConfig(root, microConfig(reference, { max_steps: STEPS }));
  const result = await train({ config: loadTrainConfig(configFile, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: configFile, log: () => {} });
  assert.is(result.status, 'done');
  assert.ok(fs.existsSync(finalCheckpoint(reference)));
});

/** Starts train.js on the reference's prepared data; resolves with the exit code once `stopWhen` holds and `signal` was sent. */
function interrupt(run: string, signal: NodeJS.Signals, stopWhen: () => boolean, extraArgs: string[] = []): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRAIN_JS, '--config', configFile, '--data', path.join(reference, 'data'), '--output-dir', run, ...extraArgs],
      { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    const poll = setInterval(() => {
      if (stopWhen()) {
        clearInterval(poll);
        child.kill(signal);
      }
    }, 20);
    child.on('error', reject);
    child.on('exit', (code, sig) => {
      clearInterval(poll);
      if (code === 0) reject(new Error(`the run finished before it was interrupted:\n${stderr}`));
      else resolve({ code: sig === 'SIGKILL' ? 137 : code, stderr });
    });
  });
}

function resumeAndCompare(run: string): void {
  const resumed = runTrain(['--config', configFile, '--data', path.join(reference, 'data'), '--output-dir', run, '--resume', 'auto']);
  assert.is(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*step-/);
  assert.ok(bytesOf(run, 'model.safetensors').equals(bytesOf(reference, 'model.safetensors')), 'weights are bitwise equal');
  assert.ok(bytesOf(run, 'optimizer.safetensors').equals(bytesOf(reference, 'optimizer.safetensors')), 'optimizer state is bitwise equal');
  // log.jsonl holds each step once, with the uninterrupted run's values.
  const steps = readMetricsLog(path.join(run, 'log.jsonl')).filter((r) => 'loss' in r).map((r) => r.step);
  assert.equal(steps, [...new Set(steps)].sort((a, b) => Number(a) - Number(b)), 'no step logged twice');
  const lossesOf = (dir: string) => readMetricsLog(path.join(dir, 'log.jsonl')).filter((r) => 'loss' in r).map((r) => r.loss);
  assert.equal(lossesOf(run), lossesOf(reference));
}

test('SIGINT stops after a step with a checkpoint; --resume auto ends bitwise equal', async () => {
  const run = path.join(root, 'sigint');
  const log = path.join(run, 'log.jsonl');
  // --save-every 0: the only checkpoint before the end is the one SIGINT writes (checkpoint.every may change on resume).
  const { code, stderr } = await interrupt(run, 'SIGINT', () => fs.existsSync(log) && readMetricsLog(log).some((r) => Number(r.step) >= 5), ['--save-every', '0']);
  assert.is(code, 130, stderr);
  const stopped = /stopped by SIGINT at step (\d+)/.exec(stderr);
  assert.ok(stopped && Number(stopped[1]) < STEPS, stderr);
  const checkpoints = fs.readdirSync(path.join(run, 'checkpoints')).filter((n) => n.startsWith('step-'));
  assert.equal(checkpoints, [`step-${stopped![1].padStart(8, '0')}`], 'the checkpoint SIGINT wrote');
  resumeAndCompare(run);
});

test('SIGKILL after a checkpoint; --resume auto ends bitwise equal', async () => {
  const run = path.join(root, 'sigkill');
  const { code } = await interrupt(run, 'SIGKILL', () => fs.existsSync(path.join(run, 'checkpoints', 'step-00000004', 'trainer.json')));
  assert.is(code, 137);
  resumeAndCompare(run);
});

test('starting again in a run directory without --resume is refused', () => {
  const again = runTrain(['--config', configFile, '--data', path.join(reference, 'data'), '--output-dir', reference]);
  assert.is(again.status, 2);
  assert.match(again.stderr, /already holds a run .*--resume auto/);
});

test('resuming with a different config names the differing keys', () => {
  const changed = runTrain(['--config', configFile, '--data', path.join(reference, 'data'), '--output-dir', reference, '--resume', 'auto', '--set', 'optimizer.lr=0.5', '--max-steps', '20']);
  assert.is(changed.status, 2);
  assert.match(changed.stderr, /optimizer\.lr: differs from the checkpoint/);
  assert.not.match(changed.stderr, /: max_steps: /);
});

test('init_from starts a new phase from a run: its weights, step and schedule from zero, other sequence length', () => {
  const phase2 = path.join(root, 'phase2');
  // warmup_steps 1: the first update's learning rate is 0, so the weights stay those of phase 1.
  const file = writeConfig(root, microConfig(phase2, {
    max_steps: 2, init_from: reference, schedule: { warmup_steps: 1 }, checkpoint: { every: 1, keep: 2 },
    data: { seq_length: 48, tokenizer_vocab_size: 200, held_out_fraction: 0.2, shuffle_buffer: 50 }, eval: { every: 0 },
  }), 'phase2.json');
  const result = runTrain(['--config', file, '--data', path.join(reference, 'data')]);
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stderr, /weights and optimizer state from .*reference.*step-00000012/);
  const first = path.join(phase2, 'checkpoints', 'step-00000001');
  assert.ok(fs.readFileSync(path.join(first, 'model.safetensors')).equals(bytesOf(reference, 'model.safetensors')), 'phase 1 weights carried over');
  const meta = JSON.parse(fs.readFileSync(path.join(first, 'trainer.json'), 'utf8'));
  assert.is(meta.step, 1);
  assert.is(meta.config.data.seq_length, 48);
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
