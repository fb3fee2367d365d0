// node dist/demo.js — the whole path on a laptop CPU in about a minute: a SentencePiece tokenizer
// trained on the built-in French sample, binary shards, a tiny DeBERTa-V3 trained with masked-LM
// for a few hundred steps, and an export that transformers loads (checked when a Python with
// transformers is found). The ELECTRA + GDES pretraining loop replaces the masked-LM loop here
// once it lands.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { createCli, integerOption, listOption, numberOption, runCli, stringOption } from './cli/args';
import { trainTokenizer } from './tokenizer/train';
import { loadTokenizer } from './tokenizer/index';
import { prepare } from './data/prepare';
import { PretrainingLoader, Batch } from './data/loader';
import {
  Generator, Tensor, tensor, rand, randint, where, tidy, crossEntropy, manualSeed, setNumThreads, liveTensorCount,
} from './tensor';
import { tinyDebertaConfig } from './models/presets';
import { DebertaV2ForMaskedLM } from './models';
import { savePretrained } from './io';
import { AdamW } from './optim';

const packageRoot = path.resolve(__dirname, '..');
const DEFAULT_SAMPLE = path.join(packageRoot, 'data', 'demo', 'fr-demo.txt');

interface DemoOptions {
  output: string;
  input: string[];
  steps: number;
  batchSize: number;
  seqLength: number;
  lr: number;
  vocabSize: number;
  threads: number;
  seed: number;
}

/** BERT's masking: 15% of real tokens are predicted; of those 80% [MASK], 10% random, 10% kept. */
function maskTokens(batch: Batch, special: { mask: number; cls: number; sep: number }, vocabSize: number, generator: Generator) {
  const shape = [batch.batchSize, batch.seqLength];
  const ids = tensor(batch.inputIds, { shape }).long();
  const attentionMask = tensor(batch.attentionMask, { shape }).long();
  const candidates = attentionMask.eq(1).logicalAnd(ids.ne(special.cls)).logicalAnd(ids.ne(special.sep));
  const selected = rand(shape, { generator }).lt(0.15).logicalAnd(candidates);
  const labels = where(selected, ids, -100);
  const choice = rand(shape, { generator });
  const masked = where(selected.logicalAnd(choice.lt(0.8)), special.mask, ids);
  const randomTokens = randint(0, vocabSize, shape, { generator });
  const inputIds = where(selected.logicalAnd(choice.ge(0.9)), randomTokens, masked);
  return { inputIds, attentionMask, labels };
}

function checkWithTransformers(modelDir: string): string {
  const venvPython = path.join(packageRoot, '.venv', 'bin', 'python3');
  const python = process.env.PYTHON ?? (fs.existsSync(venvPython) ? venvPython : 'python3');
  const script = `
import sys, json
try:
    from transformers import AutoModelForMaskedLM, AutoTokenizer
except ImportError:
    print(json.dumps({"skipped": "transformers is not installed"})); sys.exit(0)
model, info = AutoModelForMaskedLM.from_pretrained(sys.argv[1], output_loading_info=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
text = "La bibliothèque ouvre le dimanche matin."
ids = tokenizer(text)["input_ids"]
print(json.dumps({"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
                  "class": type(model).__name__, "tokenizer": type(tokenizer).__name__,
                  "tokens": tokenizer.convert_ids_to_tokens(ids)}))
`;
  const result = spawnSync(python, ['-c', script, modelDir], { encoding: 'utf8', env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
  if (result.error) return `not checked (no Python at ${python}: ${result.error.message})`;
  if (result.status !== 0) throw new Error(`transformers could not load ${modelDir}:\n${result.stderr.trim().split('\n').slice(-8).join('\n')}`);
  const report = JSON.parse(result.stdout.trim().split('\n').pop()!);
  if (report.skipped) return `not checked (${report.skipped})`;
  if (report.missing.length || report.unexpected.length) {
    throw new Error(`transformers reports missing ${JSON.stringify(report.missing)} and unexpected ${JSON.stringify(report.unexpected)} keys`);
  }
  return `${report.class} and ${report.tokenizer} load it with no missing or unexpected keys; tokens: ${report.tokens.join(' ')}`;
}

async function runDemo(options: DemoOptions): Promise<void> {
  setNumThreads(options.threads);
  manualSeed(options.seed);
  const out = path.resolve(options.output);
  fs.mkdirSync(out, { recursive: true });
  const log = (message: string) => process.stderr.write(`demo: ${message}\n`);

  log(`1/4 training a ${options.vocabSize}-piece SentencePiece tokenizer on ${options.input.join(', ')}`);
  const tokenizerDir = path.join(out, 'tokenizer');
  const trained = await trainTokenizer({ inputs: options.input, vocabSize: options.vocabSize, outputDir: tokenizerDir, seed: options.seed });
  const tokenizer = await loadTokenizer(trained.modelPath);
  const ids = tokenizer.special.ids;

  log('2/4 preparing binary shards');
  const dataDir = path.join(out, 'data');
  const manifest = await prepare({ inputs: options.input, tokenizerPath: trained.modelPath, outputDir: dataDir, overwrite: true });
  log(`    ${manifest.counts.documents} documents, ${manifest.counts.sentences} sentences, ${manifest.counts.tokens} tokens`);

  // Embedding rows: the tokenizer's ids padded to a multiple of 8, as CamemBERTa's 32008.
  const vocabSize = Math.ceil(tokenizer.vocabSize / 8) * 8;
  const config = tinyDebertaConfig({ vocab_size: vocabSize, pad_token_id: ids.pad, architectures: ['DebertaV2ForMaskedLM'] });
  const model = new DebertaV2ForMaskedLM(config, { generator: new Generator({ seed: options.seed }), init: 'truncated' });
  model.train();
  const parameterCount = model.parameters().reduce((sum, p) => sum + p.numel(), 0);
  log(`3/4 masked-LM training of a tiny DeBERTa-V3 (${(parameterCount / 1e6).toFixed(2)}M parameters) for ${options.steps} steps`);
  const loader = PretrainingLoader.open({
    dataDir,
    examples: { mode: 'electra', maxSeqLength: options.seqLength },
    batchSize: options.batchSize,
    seed: options.seed,
  });
  const optimizer = new AdamW(model.namedParameters(), { lr: options.lr, weightDecay: 0.01 });
  const maskGenerator = new Generator({ seed: options.seed + 1 });
  const warmup = Math.max(1, Math.floor(options.steps / 10));
  const started = Date.now();
  let tokens = 0;
  let firstLoss = NaN;
  let recentLoss = 0;
  // Measured after the first step: the model caches its relative-position tables per length.
  let liveAtStart = 0;
  for (let step = 1; step <= options.steps; step++) {
    const batch = loader.next();
    const lr = options.lr * Math.min(step / warmup, (options.steps - step + 1) / (options.steps - warmup + 1));
    const loss = tidy(() => {
      const { inputIds, attentionMask, labels } = maskTokens(batch, ids, tokenizer.vocabSize, maskGenerator);
      const { logits } = model.forward({ inputIds, attentionMask });
      const value = crossEntropy(logits.view(-1, vocabSize), labels.view(-1) as Tensor<'int64'>);
      value.backward();
      return value.item();
    });
    optimizer.step(lr);
    optimizer.zeroGrad();
    tokens += batch.attentionMask.reduce((a, b) => a + b, 0);
    if (step === 1) {
      firstLoss = loss;
      liveAtStart = liveTensorCount();
    }
    recentLoss = step === 1 ? loss : 0.9 * recentLoss + 0.1 * loss;
    if (step % 25 === 0 || step === options.steps) {
      const seconds = (Date.now() - started) / 1000;
      const eta = (seconds / step) * (options.steps - step);
      log(`    step ${step}/${options.steps}  loss ${recentLoss.toFixed(3)}  lr ${lr.toExponential(2)}  ${(tokens / seconds).toFixed(0)} tokens/s  ETA ${eta.toFixed(0)} s`);
    }
  }
  if (liveTensorCount() !== liveAtStart) throw new Error(`tensor leak: ${liveTensorCount() - liveAtStart} tensors left after training`);
  log(`    loss ${firstLoss.toFixed(3)} -> ${recentLoss.toFixed(3)} (uniform guess: ${Math.log(tokenizer.vocabSize).toFixed(3)})`);

  log('4/4 exporting');
  const modelDir = path.join(out, 'model');
  model.eval();
  savePretrained(model, modelDir);
  tokenizer.saveForTransformers(modelDir, config.max_position_embeddings);
  log(`    ${modelDir}: ${fs.readdirSync(modelDir).sort().join(', ')}`);
  log(`    transformers: ${checkWithTransformers(modelDir)}`);
  optimizer.dispose();
  model.dispose();
}

const cli = createCli('demo', 'Tokenizer, shards, a tiny DeBERTa-V3 trained with masked-LM on CPU, and a transformers-loadable export.')
  .option('output', stringOption('where the tokenizer, shards and model go', { default: 'runs/demo' }))
  .option('input', listOption('text files or directories (blank lines separate documents)', {
    default: [DEFAULT_SAMPLE], defaultDescription: 'the built-in French sample, data/demo/fr-demo.txt',
  }))
  .option('steps', integerOption('--steps', 'training steps', { min: 1 }, { default: 300 }))
  .option('batch-size', integerOption('--batch-size', 'examples per step', { min: 1 }, { default: 16 }))
  .option('seq-length', integerOption('--seq-length', 'tokens per example (the tiny model has 128 positions)', { min: 8, max: 128 }, { default: 64 }))
  .option('lr', numberOption('--lr', 'peak learning rate (linear warm-up over 10% of the steps, then linear decay)', { min: 0, max: 1 }, { default: 3e-3 }))
  .option('vocab-size', integerOption('--vocab-size', 'SentencePiece pieces (the built-in sample supports up to about 640)', { min: 16 }, { default: 512 }))
  .option('threads', integerOption('--threads', 'intra-op CPU threads', { min: 1 }, { default: 1 }))
  .option('seed', integerOption('--seed', 'random seed', { min: 0 }, { default: 0 }));

void runCli(cli, (args) => runDemo(args));
