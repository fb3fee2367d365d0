// Where a DeBERTa training step spends its time on a GPU: forward only, forward + backward, with
// dropout off, with the diagonal-view c2p/p2c path replaced by gathers, and with one CPU thread.
// Prints ms per step (medians), ours only; bench/model.ts compares with transformers.
import {
  Generator, randint, ones, tidy, crossEntropy, setNumThreads, synchronize, noGrad, Tensor,
} from '../src';
import { tinyDebertaConfig } from '../src/models/presets';
import { DebertaV2ForMaskedLM } from '../src/models';
import { median } from './common';

const device = process.env.BENCH_DEVICE === 'cpu' ? 'cpu' : 'cuda';
const batch = Number(process.env.BENCH_BATCH ?? 64);
const seq = 128;
const config = tinyDebertaConfig({
  vocab_size: 8008, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024,
  embedding_size: 256, max_position_embeddings: 512, position_buckets: 256, architectures: ['DebertaV2ForMaskedLM'],
});
const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: 0 }) });
model.to(device);
const inputIds = randint(5, config.vocab_size, [batch, seq], { device });
const attentionMask = ones([batch, seq], { dtype: 'int64', device });
const labels = randint(0, config.vocab_size, [batch, seq], { device });
const sync = () => (device === 'cuda' ? synchronize() : undefined);

function time(label: string, fn: () => void, steps = 20): void {
  for (let i = 0; i < 3; i++) fn();
  sync();
  const runs: number[] = [];
  for (let i = 0; i < steps; i++) {
    const start = process.hrtime.bigint();
    fn();
    sync();
    runs.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  console.log(`${label.padEnd(48)} ${median(runs).toFixed(2)} ms`);
}

const forward = () => model.forward({ inputIds, attentionMask }).logits;
const trainStep = () => {
  tidy(() => crossEntropy(forward().view(-1, config.vocab_size), labels.view(-1) as Tensor<'int64'>).backward());
  for (const p of model.parameters()) p.grad = null;
};

model.train();
time('forward, no grad (train mode)', () => noGrad(() => tidy(() => { forward(); })));
time('forward with grad, no backward', () => tidy(() => { forward(); }));
time('forward + backward', trainStep);
time('forward + backward, 1 CPU thread', () => { setNumThreads(1); trainStep(); });
model.eval();
time('forward + backward, dropout off', trainStep);
model.train();
const plan = model.deberta.encoder.relativePositionPlan(seq, inputIds.device);
plan.identity = false;
time('forward + backward, c2p/p2c by gather', trainStep);
time('embedding + MLM head only (no layers)', () => {
  tidy(() => {
    const hidden = model.deberta.embeddings.forward({ inputIds, attentionMask }, attentionMask);
    crossEntropy(model.cls!.forward(hidden).view(-1, config.vocab_size), labels.view(-1) as Tensor<'int64'>).backward();
  });
  for (const p of model.parameters()) p.grad = null;
});
