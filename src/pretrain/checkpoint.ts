// Training checkpoints: OUTPUT_DIR/checkpoints/step-NNNNNNNN/, each a directory that appears whole
// (staged beside it, fsynced, renamed) or not at all, so the newest directory named step-* is always
// complete; the previous one stays until the new one is in place, and only the last `keep` remain.
//   model.safetensors      every parameter of the training model, by its path (both models, the GDES delta)
//   optimizer.safetensors  optimizer state (optimizer/...), loss scaler (scaler/...), RNG states (rng/...)
//   trainer.json           step, optimizer host state, data position, tokens and time so far, the config
//   tokenizer/             the tokenizer files, so that a checkpoint exports on its own
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tidy } from '../tensor';
import { readSafetensors, writeSafetensors, toSafetensorsEntry, fromSafetensorsEntry, replaceDirectoryAtomicSync } from '../io';
import type { TrainConfig } from './config';

export const CHECKPOINTS_DIR = 'checkpoints';
const PREFIX = 'step-';
export const CHECKPOINT_FORMAT = 'camemberta-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  step: number;
  optimizer: Record<string, unknown>;
  data: unknown;
  tokens: number;
  elapsedSeconds: number;
  /** The logging window in progress: micro-batches and tokens since the last log line. */
  window?: { microBatches: number; tokens: number };
  config: TrainConfig;
}

export interface CheckpointContents {
  model: Map<string, Tensor>;
  state: Map<string, Tensor>;
  meta: CheckpointMeta;
}

export function checkpointName(step: number): string {
  return `${PREFIX}${String(step).padStart(8, '0')}`;
}

/** Complete checkpoints of a run, oldest first. */
export function listCheckpoints(outputDir: string): { step: number; dir: string }[] {
  const root = path.join(outputDir, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && /^step-\d+$/.test(entry.name))
    .map((entry) => ({ step: Number(entry.name.slice(PREFIX.length)), dir: path.join(root, entry.name) }))
    .filter(({ dir }) => fs.existsSync(path.join(dir, 'trainer.json')))
    .sort((a, b) => a.step - b.step);
}

export function newestCheckpoint(outputDir: string): string | null {
  const all = listCheckpoints(outputDir);
  return all.length ? all[all.length - 1].dir : null;
}

/** A run directory or a checkpoint directory -> the checkpoint directory (the newest for a run). */
export function resolveCheckpoint(location: string): string {
  if (fs.existsSync(path.join(location, 'trainer.json'))) return location;
  const newest = newestCheckpoint(location);
  if (!newest) throw new Error(`${location}: neither a checkpoint (no trainer.json) nor a run directory with checkpoints/step-*`);
  return newest;
}

function writeTensorFile(file: string, tensors: Map<string, Tensor>): void {
  tidy(() => {
    const entries = new Map([...tensors].map(([key, t]) => [key, toSafetensorsEntry(t.detach().cpu(), key)] as const));
    writeSafetensors(file, entries, { format: 'pt' });
  });
}

/** Writes a checkpoint for `meta.step` and removes all but the newest `keep`. */
export function saveCheckpoint(outputDir: string, contents: CheckpointContents, writeTokenizer: (dir: string) => void, keep: number): string {
  const dir = path.join(outputDir, CHECKPOINTS_DIR, checkpointName(contents.meta.step));
  replaceDirectoryAtomicSync(dir, (staging) => {
    writeTensorFile(path.join(staging, 'model.safetensors'), contents.model);
    writeTensorFile(path.join(staging, 'optimizer.safetensors'), contents.state);
    fs.mkdirSync(path.join(staging, 'tokenizer'));
    writeTokenizer(path.join(staging, 'tokenizer'));
    fs.writeFileSync(path.join(staging, 'trainer.json'), `${JSON.stringify(contents.meta, null, 2)}\n`);
  });
  const all = listCheckpoints(outputDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old.dir, { recursive: true, force: true });
  return dir;
}

/** Reads a checkpoint's tensors (CPU, owned by the caller's scope) and metadata. */
export function loadCheckpoint(dir: string): CheckpointContents {
  const metaFile = path.join(dir, 'trainer.json');
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as CheckpointMeta;
  } catch (error) {
    throw new Error(`${metaFile}: cannot read the checkpoint: ${(error as Error).message}`);
  }
  if (meta.format !== CHECKPOINT_FORMAT || meta.version !== CHECKPOINT_VERSION) {
    throw new Error(`${metaFile}: not a ${CHECKPOINT_FORMAT} v${CHECKPOINT_VERSION} checkpoint`);
  }
  const read = (name: string) => {
    const file = path.join(dir, name);
    const out = new Map<string, Tensor>();
    for (const [key, entry] of readSafetensors(file).tensors) out.set(key, fromSafetensorsEntry(entry, key, file));
    return out;
  };
  return { model: read('model.safetensors'), state: read('optimizer.safetensors'), meta };
}

/** Tokenizer files stored in a checkpoint. */
export function checkpointTokenizer(dir: string): string {
  return path.join(dir, 'tokenizer', 'spm.model');
}

/** Staging directories a crash left behind (never complete checkpoints). */
export function removeStaleStaging(outputDir: string): void {
  const root = path.join(outputDir, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return;
  for (const name of fs.readdirSync(root)) {
    if (/^\.step-\d+\.(staging|old)-/.test(name)) fs.rmSync(path.join(root, name), { recursive: true, force: true });
  }
}
