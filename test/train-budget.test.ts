// max_seconds: a wall-time budget ends the run like max_steps does (checkpoint, export, status done).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, writeConfig, DEMO_TEXT } from './helpers/train';
import { loadTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';

test('the run ends at the first step past max_seconds, with a checkpoint and an export', async () => {
  const root = tempDir('train-budget');
  const output = path.join(root, 'run');
  const configFile = writeConfig(root, microConfig(output, { max_steps: 100_000, max_seconds: 1, checkpoint: { every: 0, keep: 1 }, eval: { every: 0 } }));
  const started = Date.now();
  const result = await train({ config: loadTrainConfig(configFile, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: configFile, log: () => {} });
  assert.is(result.status, 'done');
  assert.ok(result.step >= 1 && result.step < 100_000, `stopped at step ${result.step}`);
  assert.ok(Date.now() - started < 60_000);
  assert.ok(fs.existsSync(path.join(output, 'checkpoints', `step-${String(result.step).padStart(8, '0')}`)));
  assert.ok(fs.existsSync(path.join(output, 'export', 'discriminator', 'model.safetensors')));
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
