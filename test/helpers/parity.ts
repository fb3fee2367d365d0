// Comparing our models with HuggingFace references made by test/python/hf_reference.py.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, tidy } from '../../src/tensor';
import { readSafetensors, fromSafetensorsEntry } from '../../src/io';
import { Module } from '../../src/nn';
import { runPython, pythonScript } from './python';

/** Runs hf_reference.py once for all configs into a fresh temporary directory; returns it. */
export function generateReference(configs: string[], seed = 0): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-parity-'));
  runPython([pythonScript('hf_reference.py'), dir, ...configs, '--seed', String(seed)], { timeoutMs: 300_000 });
  return dir;
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Every tensor of a safetensors file, as CPU tensors (the caller's tidy owns them). */
export function readTensors(file: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, entry] of readSafetensors(file).tensors) out.set(name, fromSafetensorsEntry(entry, name, file));
  return out;
}

export interface ReferenceBatch {
  inputIds: Tensor<'int64'>;
  attentionMask: Tensor<'int64'>;
  labels: Tensor<'int64'>;
}

export function readBatch(configDir: string): ReferenceBatch {
  const t = readTensors(path.join(configDir, 'inputs.safetensors'));
  return { inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')!, labels: t.get('labels')! };
}

/** max |a - b| over positions where mask [B, L] is 1 (a, b: [B, L, ...]). */
export function maxAbsDiffAtTokens(a: Tensor, b: Tensor, mask: Tensor): number {
  return tidy(() => {
    if (a.shape.join() !== b.shape.join()) throw new Error(`shape [${a.shape}] vs [${b.shape}]`);
    const pad = mask.eq(0).unsqueeze(-1);
    return a.sub(b).abs().maskedFill(pad, 0).max().item();
  });
}

export interface GradientComparison {
  /** Largest relative error max|a-b| / max|b| among parameters with a non-negligible gradient. */
  worstRelative: number;
  worstKey: string;
  /**
   * Parameters whose reference gradient is zero in exact arithmetic (a bias added equally to
   * every score of a softmax row: max|b| is rounding noise, below 1e-6 of the largest gradient);
   * for these both sides must be negligible: the largest max|a| among them, over that scale.
   */
  negligibleKeys: string[];
  worstNegligible: number;
  missing: string[];
}

/**
 * Compares every parameter's .grad with grads.safetensors. Relative error per parameter is
 * max|a - b| / max(max|b|, tiny) with tiny = 1e-6 x the largest reference gradient.
 */
export function compareGradients(model: Module, gradsFile: string): GradientComparison {
  return tidy(() => {
    const reference = readTensors(gradsFile);
    const scale = Math.max(...[...reference.values()].map((g) => g.abs().max().item()));
    const tiny = 1e-6 * scale;
    const result: GradientComparison = { worstRelative: 0, worstKey: '', negligibleKeys: [], worstNegligible: 0, missing: [] };
    for (const [key, parameter] of model.namedParameters()) {
      const expected = reference.get(key);
      if (!expected) {
        result.missing.push(key);
        continue;
      }
      const grad = parameter.grad;
      const actual = grad ?? expected.mul(0);
      const referenceMax = expected.abs().max().item();
      if (referenceMax <= tiny) {
        result.negligibleKeys.push(key);
        result.worstNegligible = Math.max(result.worstNegligible, actual.abs().max().item() / scale);
        continue;
      }
      const relative = actual.sub(expected).abs().max().item() / referenceMax;
      if (relative > result.worstRelative) {
        result.worstRelative = relative;
        result.worstKey = key;
      }
    }
    return result;
  });
}

export interface HfCheckReport {
  class: string;
  model_class: string;
  missing_keys: string[];
  unexpected_keys: string[];
  mismatched_keys: string[];
  error_msgs: string[];
  num_parameters: number;
}

/** Loads modelDir in transformers (hf_reference.py --check) and runs it on the inputs file. */
export function hfCheck(modelDir: string, inputsFile: string, outputFile: string, className?: string): HfCheckReport {
  const args = [pythonScript('hf_reference.py'), '--check', modelDir, '--inputs', inputsFile, '--output', outputFile];
  if (className) args.push('--class', className);
  const { stdout } = runPython(args);
  return JSON.parse(stdout.trim().split('\n').pop()!) as HfCheckReport;
}
