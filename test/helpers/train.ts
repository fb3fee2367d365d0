// Small training runs for tests: a micro ELECTRA config (seconds per run on one CPU thread) over
// the built-in French sample, and the spawned train.js command line.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync, SpawnSyncReturns } from 'child_process';
import { repoRoot } from './python';

export const DEMO_TEXT = path.join(repoRoot, 'data', 'demo', 'fr-demo.txt');
export const TRAIN_JS = path.join(repoRoot, 'dist', 'train.js');
export const EXPORT_JS = path.join(repoRoot, 'dist', 'export.js');

/** A micro ELECTRA + GDES run: 1-layer models, 32-token rows, one CPU thread (deterministic). */
export function microConfig(outputDir: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    objective: 'electra',
    model: {
      type: 'deberta-v2',
      preset: 'tiny',
      config: { hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, embedding_size: 32, max_position_embeddings: 64, position_buckets: 16 },
      generator: { hidden_ratio: 0.5, layer_ratio: 1 },
    },
    data: { seq_length: 32, tokenizer_vocab_size: 200, held_out_fraction: 0.2, shuffle_buffer: 50 },
    batch: { global_batch_size: 8, micro_batch_size: 4 },
    optimizer: { name: 'lamb', lr: 0.01 },
    schedule: { warmup_steps: 2 },
    max_steps: 12,
    threads: 1,
    logging: { every: 2, progress: false },
    eval: { every: 6, batches: 2 },
    checkpoint: { every: 4, keep: 2 },
    output_dir: outputDir,
    ...overrides,
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `camemberta-${prefix}-`));
}

export function writeConfig(dir: string, config: Record<string, unknown>, name = 'config.json'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export function runTrain(args: string[], options: { timeoutMs?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [TRAIN_JS, ...args], { encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, cwd: repoRoot });
}
