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
function interrupt(run: string, signal: NodeJS.Signals, stopWhen: () => boolean): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRAIN_JS, '--config', configFile, '--data', path.join(reference, 'data'), '--output-dir', run],
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
      else resolve(sig === 'SIGKILL' ? 137 : code);
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
  const code = await interrupt(run, 'SIGINT', () => fs.existsSync(log) && readMetricsLog(log).some((r) => Number(r.step) >= 5));
  assert.is(code, 130);
  const checkpoints = fs.readdirSync(path.join(run, 'checkpoints')).filter((n) => n.startsWith('step-'));
  assert.ok(checkpoints.some((n) => Number(n.slice(5)) % 4 !== 0), `a checkpoint written on SIGINT, not only the periodic ones: ${checkpoints}`);
  resumeAndCompare(run);
});

test('SIGKILL after a checkpoint; --resume auto ends bitwise equal', async () => {
  const run = path.join(root, 'sigkill');
  const code = await interrupt(run, 'SIGKILL', () => fs.existsSync(path.join(run, 'checkpoints', 'step-00000004', 'trainer.json')));
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

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
