// DeBERTa and RoBERTa on a GPU against the HuggingFace CPU reference (float32, and bf16/fp16
// autocast). Skipped where no GPU is present; scripts/gpu-check.sh runs it.
import * as path from 'path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tidy, cudaAvailable, autocast, Tensor } from '../src/tensor';
import { loadPretrained } from '../src/io';
import { DebertaV2ForMaskedLM } from '../src/models';
import { generateReference, removeDir, readBatch, readTensors } from './helpers/parity';

const gpuTest = cudaAvailable() ? test : test.skip;
const CONFIGS = ['deberta-v3', 'deberta-v3-long', 'deberta-v3-conv', 'deberta-generator', 'deberta-v2', 'roberta'];

let reference = '';
test.before(() => {
  if (cudaAvailable()) reference = generateReference(CONFIGS);
});
test.after(() => {
  if (reference) removeDir(reference);
});

/** ||a - b|| / ||b|| over non-pad positions. */
function relativeErrorAtTokens(actual: Tensor, expected: Tensor, mask: Tensor): number {
  return tidy(() => {
    const keep = mask.cpu().unsqueeze(-1).double();
    const a = actual.cpu().double().mul(keep);
    const b = expected.double().mul(keep);
    return a.sub(b).norm().item() / b.norm().item();
  });
}

for (const name of CONFIGS) {
  gpuTest(`${name}: forward on cuda matches HF's CPU outputs (float32, then autocast)`, () => {
    const dir = path.join(reference, name);
    const { model } = loadPretrained(path.join(dir, 'model'));
    try {
      model.to('cuda').eval();
      tidy(() => {
        const batch = readBatch(dir);
        const expected = readTensors(path.join(dir, 'outputs.safetensors'));
        const inputs = { inputIds: batch.inputIds.cuda(), attentionMask: batch.attentionMask.cuda() };
        const out = (model as DebertaV2ForMaskedLM).forward(inputs);
        assert.is(out.logits.device, 'cuda:0');
        const error = relativeErrorAtTokens(out.logits, expected.get('logits')!, batch.attentionMask);
        assert.ok(error < 1e-3, `float32 logits relative error ${error}`);
        for (const dtype of ['bfloat16', 'float16'] as const) {
          const low = autocast({ device: 'cuda', dtype }, () => (model as DebertaV2ForMaskedLM).forward(inputs).logits);
          const lowError = relativeErrorAtTokens(low, expected.get('logits')!, batch.attentionMask);
          assert.ok(Number.isFinite(lowError) && lowError < 5e-2, `${dtype} autocast logits relative error ${lowError}`);
        }
      });
    } finally {
      model.dispose();
    }
  });
}

test('cuda-models: the suite is wired (runs its GPU cases only with a GPU)', () => {
  assert.type(cudaAvailable(), 'boolean');
});

test.run();
