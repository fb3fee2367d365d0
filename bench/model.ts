// npm run bench:model — a DeBERTa-V3 masked-LM training step (forward + backward) of ours next to
// HuggingFace transformers' in PyTorch, same config, batch, threads and device, in the same run.
// Environment: BENCH_DEVICE=cpu|cuda, BENCH_AUTOCAST=bfloat16|float16 (off by default),
// BENCH_SEQ (128), BENCH_BATCH (8 on CPU, 64 on CUDA), BENCH_LAYERS (4), BENCH_HIDDEN (256), BENCH_STEPS.
import { spawnSync } from 'child_process';
import { median, pythonExecutable } from './common';
import {
  Generator, randint, ones, tidy, crossEntropy, setNumThreads, getNumThreads, synchronize, autocast, torchVersion,
  Tensor,
} from '../src';
import { tinyDebertaConfig } from '../src/models/presets';
import { debertaConfigToJson } from '../src/models/deberta/config';
import { DebertaV2ForMaskedLM } from '../src/models';

const device = process.env.BENCH_DEVICE === 'cuda' ? 'cuda' : 'cpu';
const precision = process.env.BENCH_AUTOCAST as 'bfloat16' | 'float16' | undefined;
const seq = Number(process.env.BENCH_SEQ ?? 128);
const batch = Number(process.env.BENCH_BATCH ?? (device === 'cuda' ? 64 : 8));
const layers = Number(process.env.BENCH_LAYERS ?? 4);
const hidden = Number(process.env.BENCH_HIDDEN ?? 256);
const steps = Number(process.env.BENCH_STEPS ?? (device === 'cuda' ? 30 : 10));
const threads = Number(process.env.BENCH_THREADS ?? getNumThreads());
setNumThreads(threads);

const config = tinyDebertaConfig({
  vocab_size: 8008, hidden_size: hidden, num_hidden_layers: layers, num_attention_heads: hidden / 64,
  intermediate_size: 4 * hidden, embedding_size: hidden, max_position_embeddings: 512, position_buckets: 256,
  architectures: ['DebertaV2ForMaskedLM'],
});



const sync = device === 'cuda' ? () => synchronize() : () => undefined;
const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: 0 }) });
model.to(device).train();
const generator = new Generator({ seed: 1, device });
const inputIds = randint(5, config.vocab_size, [batch, seq], { generator, device });
const attentionMask = ones([batch, seq], { dtype: 'int64', device });
const labels = randint(0, config.vocab_size, [batch, seq], { generator, device });

function step(): void {
  tidy(() => {
    const run = () => {
      const { logits } = model.forward({ inputIds, attentionMask });
      return crossEntropy(logits.view(-1, config.vocab_size).float(), labels.view(-1) as Tensor<'int64'>);
    };
    const loss = precision ? autocast({ device, dtype: precision }, run) : run();
    loss.backward();
  });
  for (const p of model.parameters()) p.grad = null;
  sync();
}

for (let i = 0; i < 3; i++) step();
const ours: number[] = [];
for (let i = 0; i < steps; i++) {
  const start = process.hrtime.bigint();
  step();
  ours.push(Number(process.hrtime.bigint() - start) / 1e6);
}
const oursMs = median(ours);

const python = spawnSync(pythonExecutable(), ['-c', `
import json, sys, time, statistics, torch, transformers
torch.set_num_threads(${threads})
config = transformers.DebertaV2Config(**json.loads(sys.argv[1]))
config._attn_implementation = "eager"
device = "${device}"
model = transformers.DebertaV2ForMaskedLM(config).to(device).train()
g = torch.Generator(device=device).manual_seed(1)
ids = torch.randint(5, config.vocab_size, (${batch}, ${seq}), generator=g, device=device)
mask = torch.ones(${batch}, ${seq}, dtype=torch.long, device=device)
labels = torch.randint(0, config.vocab_size, (${batch}, ${seq}), generator=g, device=device)
precision = ${precision ? `torch.${precision}` : 'None'}
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
def step():
    with torch.autocast(device, dtype=precision, enabled=precision is not None):
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, config.vocab_size).float(), labels.view(-1))
    loss.backward()
    model.zero_grad(set_to_none=True)
    sync()
for _ in range(3): step()
runs = []
for _ in range(${steps}):
    start = time.perf_counter_ns(); step(); runs.append((time.perf_counter_ns() - start) / 1e6)
print(statistics.median(runs), torch.__version__, transformers.__version__)
`, JSON.stringify(debertaConfigToJson(config))], { encoding: 'utf8', env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
if (python.status !== 0) {
  console.error(`python reference failed:\n${python.stderr}`);
  process.exit(1);
}
const [pythonMs, pythonTorch, transformersVersion] = python.stdout.trim().split('\n').pop()!.split(/\s+/);
const tokens = batch * seq;
console.log(`bench:model  DeBERTa-V3 MLM fwd+bwd, ${layers} layers x ${hidden} hidden, vocab ${config.vocab_size}, batch ${batch} x seq ${seq}, ` +
  `device ${device}${precision ? `, autocast ${precision}` : ', float32'}, ${threads} thread(s)`);
console.log(`  camemberta (libtorch ${torchVersion}):           ${oursMs.toFixed(1)} ms/step  ${(tokens / oursMs * 1000).toFixed(0)} tokens/s`);
console.log(`  transformers ${transformersVersion} (torch ${pythonTorch}): ${Number(pythonMs).toFixed(1)} ms/step  ${(tokens / Number(pythonMs) * 1000).toFixed(0)} tokens/s`);
console.log(`  speed-up over transformers: ${(Number(pythonMs) / oursMs).toFixed(2)}x`);
model.dispose();
