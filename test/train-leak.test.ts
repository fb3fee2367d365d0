// The live tensor count stays flat over 1,000 optimizer steps of a micro ELECTRA run with gradient
// accumulation, a loss scaler that overflows and skips steps, and periodic evaluation.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { liveTensorCount } from '../src/tensor';
import { microConfig, tempDir, DEMO_TEXT } from './helpers/train';
import { parseTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';
import { readMetricsLog } from '../src/pretrain/metrics-log';

const root = tempDir('train-leak');

test('1,000 steps with accumulation, skipped steps and evaluation leak no tensor', async () => {
  const run = path.join(root, 'run');
  const config = parseTrainConfig(microConfig(run, {
    model: { type: 'deberta-v2', preset: 'tiny', config: { hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 32, embedding_size: 16, max_position_embeddings: 32, position_buckets: 8 }, generator: { hidden_ratio: 1, layer_ratio: 1 } },
    data: { path: DEMO_TEXT, seq_length: 16, tokenizer_vocab_size: 100, held_out_fraction: 0.2, shuffle_buffer: 20 },
    batch: { global_batch_size: 4, micro_batch_size: 2 },
    max_steps: 1000,
    schedule: { warmup_steps: 10 },
    // A scale far past float32's range overflows at first; growth every 50 clean steps overflows again.
    loss_scale: { enabled: true, init_scale: 1e38, growth_factor: 1e6, growth_interval: 50 },
    logging: { every: 25, progress: false, tensorboard: false },
    eval: { every: 250, batches: 2 },
    checkpoint: { every: 0, keep: 1 },
    export: { at_end: false, pytorch_bin: false },
  }), 'leak-config');
  const counts: number[] = [];
  const result = await train({ config, source: 'leak-config', log: () => {}, onStep: () => counts.push(liveTensorCount()) });
  assert.is(result.step, 1000);
  assert.is(counts.length, 1000);
  const after = counts.slice(1);
  assert.ok(after.every((n) => n === counts[1]), `live tensors after step 2..1000 vary: min ${Math.min(...after)} max ${Math.max(...after)} (step 1: ${counts[0]})`);
  const scales = readMetricsLog(path.join(run, 'log.jsonl')).filter((r) => 'loss_scale' in r).map((r) => Number(r.loss_scale));
  assert.ok(scales.some((s, i) => i > 0 && s < scales[i - 1]), `the scale backed off at least once after overflowing: ${scales.join(', ')}`);
  assert.ok(readMetricsLog(path.join(run, 'log.jsonl')).some((r) => 'eval_disc_auc' in r), 'evaluation ran');
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
