// bfloat16 autocast trains on CPU (a few micro steps: finite, falling losses), and the loss scaler
// runs (and logs its scale) when asked for outside float16.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, DEMO_TEXT } from './helpers/train';
import { parseTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';
import { readMetricsLog } from '../src/pretrain/metrics-log';

const root = tempDir('train-precision');

test('bfloat16 autocast on CPU, with the dynamic loss scaler on', async () => {
  const run = path.join(root, 'bf16');
  const config = parseTrainConfig(microConfig(run, {
    precision: 'bfloat16', max_steps: 6, loss_scale: { enabled: true, init_scale: 1024 },
    data: { path: DEMO_TEXT, seq_length: 32, tokenizer_vocab_size: 200, held_out_fraction: 0.2, shuffle_buffer: 50 },
    logging: { every: 1, progress: false }, eval: { every: 0 }, export: { at_end: false, pytorch_bin: false },
  }), 'bf16');
  const lines: string[] = [];
  const result = await train({ config, source: 'bf16', log: (l) => lines.push(l) });
  assert.is(result.status, 'done');
  assert.ok(lines.some((l) => /cpu, bfloat16/.test(l)), lines.join('\n'));
  const log = readMetricsLog(path.join(run, 'log.jsonl')).filter((r) => 'loss' in r);
  assert.is(log.length, 6);
  for (const r of log) assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.grad_norm), JSON.stringify(r));
  assert.is(log[0].loss_scale, 1024);
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
