// train.js --profile N: the first N steps' time by phase, printed once, the run otherwise unchanged.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, writeConfig, DEMO_TEXT } from './helpers/train';
import { loadTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';

test('a profile of the first steps names every phase with its share, once', async () => {
  const root = tempDir('train-profile');
  const configFile = writeConfig(root, microConfig(path.join(root, 'run'), { max_steps: 5, eval: { every: 0 }, checkpoint: { every: 0, keep: 1 } }));
  const lines: string[] = [];
  const result = await train({ config: loadTrainConfig(configFile, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: configFile, log: (l) => lines.push(l), profileSteps: 3 });
  assert.is(result.status, 'done');
  const output = lines.join('\n');
  assert.is(output.match(/profile of 3 step\(s\)/g)?.length, 1, output);
  let shares = 0;
  for (const phase of ['forward', 'backward', 'optimizer', 'data', 'communication', 'other']) {
    const match = new RegExp(`train:\\s+${phase}.*?([\\d.]+) ms\\s+([\\d.]+)%`).exec(output);
    assert.ok(match, `${phase} in\n${output}`);
    shares += Number(match![2]);
  }
  assert.ok(Math.abs(shares - 100) < 0.5, `shares add up to ${shares}%`);
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
