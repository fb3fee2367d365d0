// Shared by the pretraining-objective parity tests: case directories for
// test/python/electra_reference.py, the padded batches they run on, and weights far from HF's
// init so that every parameter matters.
import * as fs from 'fs';
import * as path from 'path';
import { Generator, Tensor, noGrad, randint, randn, tensor, tidy } from '../../src/tensor';
import { Module } from '../../src/nn';
import { writeSafetensors, toSafetensorsEntry } from '../../src/io';
import type { Masking, SpecialTokenIds } from '../../src/pretrain/electra';
import { pythonScript, runPython } from './python';

export interface ReferenceCase {
  /** case.json: kind 'electra' (sharing, disc_weight) or 'mlm' (model_type). */
  spec: Record<string, unknown>;
  /** File name (generator.json, discriminator.json, config.json) -> HF config.json content. */
  configs: Record<string, Record<string, unknown>>;
  /** Parameter name -> tensor (read only: copied to disk). */
  parameters: [string, Tensor][];
  /** input_ids, attention_mask, masked_input_ids, positions, original_ids, weights (, sampled_ids). */
  inputs: Record<string, Tensor>;
}

function writeTensors(file: string, tensors: Iterable<[string, Tensor]>): void {
  const entries = new Map([...tensors].map(([name, t]) => [name, toSafetensorsEntry(t, name)] as const));
  writeSafetensors(file, entries, { format: 'pt' });
}

/** Writes root/name/ as electra_reference.py reads it. */
export function writeReferenceCase(root: string, name: string, reference: ReferenceCase): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'case.json'), JSON.stringify(reference.spec));
  for (const [file, json] of Object.entries(reference.configs)) fs.writeFileSync(path.join(dir, file), JSON.stringify(json));
  writeTensors(path.join(dir, 'parameters.safetensors'), reference.parameters);
  writeTensors(path.join(dir, 'inputs.safetensors'), Object.entries(reference.inputs));
  return dir;
}

/** Runs electra_reference.py over the named cases in one process; returns its per-case losses. */
export function runObjectiveReference(root: string, names: string[]): Record<string, Record<string, number>> {
  const { stdout } = runPython([pythonScript('electra_reference.py'), root, ...names], { timeoutMs: 300_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, Record<string, number>>;
}

/** The masking's tensors under the names electra_reference.py reads. */
export function maskingInputs(batch: { inputIds: Tensor; attentionMask: Tensor }, masking: Masking): Record<string, Tensor> {
  return {
    input_ids: batch.inputIds, attention_mask: batch.attentionMask, masked_input_ids: masking.inputIds,
    positions: masking.positions, original_ids: masking.originalIds, weights: masking.weights,
  };
}

/**
 * Rows `[CLS] tokens [SEP]` of the given lengths, right-padded to the longest; tokens uniform
 * in [firstFree, vocabSize) excluding the special ids. int64 [B, L] each.
 */
export function paddedBatch(lengths: number[], vocabSize: number, special: SpecialTokenIds, firstFree: number, generator: Generator):
  { inputIds: Tensor<'int64'>; attentionMask: Tensor<'int64'> } {
  const width = Math.max(...lengths);
  const specials = new Set([special.mask, special.cls, special.sep, special.pad]);
  const draws = tidy(() => randint(firstFree, vocabSize, [lengths.length, width], { generator }).toArray() as number[][]);
  const ids = lengths.map((length, row) => Array.from({ length: width }, (_, i) => {
    if (i >= length) return special.pad;
    if (i === 0) return special.cls;
    if (i === length - 1) return special.sep;
    let token = draws[row][i];
    while (specials.has(token)) token = firstFree + ((token - firstFree + 1) % (vocabSize - firstFree));
    return token;
  }));
  const mask = lengths.map((length) => Array.from({ length: width }, (_, i) => (i < length ? 1 : 0)));
  return { inputIds: tensor(ids, { dtype: 'int64' }), attentionMask: tensor(mask, { dtype: 'int64' }) };
}

/**
 * hf_reference.py's randomize(): LayerNorm weights 1 + 0.1 N(0,1), everything else 0.2 N(0,1),
 * so that attention is far from uniform and every bias and LayerNorm parameter matters.
 * `scales` overrides the 0.2 for named parameters (GDES's delta is kept small).
 */
export function randomizeParameters(model: Module, generator: Generator, scales: Record<string, number> = {}): void {
  noGrad(() => tidy(() => {
    for (const [name, parameter] of model.namedParameters()) {
      const noise = randn(parameter.shape, { generator });
      parameter.copy_(name.endsWith('LayerNorm.weight') ? noise.mul(0.1).add(1) : noise.mul(scales[name] ?? 0.2));
    }
  }));
}
