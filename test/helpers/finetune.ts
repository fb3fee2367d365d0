// Small fine-tuning runs for tests: a micro pretraining export (seconds), Sequoia subsets of a few
// dozen sentences, and the spawned finetune.js / predict.js command lines.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync, SpawnSyncReturns } from 'child_process';
import { repoRoot } from './python';
import { microConfig, writeConfig, runTrain, DEMO_TEXT } from './train';

export const FINETUNE_JS = path.join(repoRoot, 'dist', 'finetune.js');
export const PREDICT_JS = path.join(repoRoot, 'dist', 'predict.js');
export const SEQUOIA = path.join(repoRoot, '..', 'shared', 'data', 'ud-french-sequoia');

/** The first `count` sentences of a Sequoia split, written to dir/name; `edit` may change the text. */
export function sequoiaSubset(split: 'train' | 'dev' | 'test', count: number, file: string, edit: (text: string) => string = (t) => t): string {
  const text = fs.readFileSync(path.join(SEQUOIA, `fr_sequoia-ud-${split}.conllu`), 'utf8');
  const sentences = text.split(/\n\n/).filter((s) => s.trim() !== '').slice(0, count);
  fs.writeFileSync(file, edit(`${sentences.join('\n\n')}\n\n`));
  return file;
}

/** A micro ELECTRA pretraining's exported discriminator (a DebertaV2Model directory with spm.model). */
export function microEncoder(root: string): string {
  const run = path.join(root, 'pretrain');
  const file = writeConfig(root, microConfig(run, { max_steps: 4, export: { at_end: true, pytorch_bin: false }, checkpoint: { every: 0, keep: 1 } }), 'pretrain.json');
  const result = runTrain(['--config', file, '--data', DEMO_TEXT], { timeoutMs: 900_000 });
  if (result.status !== 0) throw new Error(`micro pretraining failed: ${result.stderr}`);
  return path.join(run, 'export', 'discriminator');
}

export function runNodeScript(script: string, args: string[], timeoutMs = 900_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: timeoutMs, cwd: repoRoot });
}

export function readResults(dir: string): Record<string, any> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
}
