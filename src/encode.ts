#!/usr/bin/env node
// Feature extraction: runs a saved model on a JSON batch of token ids and writes its outputs as
// safetensors. Outside tools use it to check our forward pass against theirs.
//   node dist/encode.js --model DIR --input batch.json --output out.safetensors
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tensor, tidy, noGrad, setNumThreads } from './tensor';
import { loadPretrained, writeSafetensors, toSafetensorsEntry } from './io';
import { ModelConfig, PreTrainedModule } from './models';
import { createCli, integerOption, numberOption, runCli, stringOption, UsageError } from './cli/args';

interface Batch {
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids?: number[][];
}

/** Default of --max-attention-gb: attention scores of one layer above this are refused up front. */
const DEFAULT_MAX_ATTENTION_GB = 4;

/**
 * Refuses, before anything is allocated, a batch the model cannot take: a sequence longer than
 * its absolute positions, a token type outside type_vocab_size, or one whose attention scores
 * (batch x heads x length^2 floats, about three such tensors live per layer with relative
 * attention's c2p and p2c terms) would pass `maxAttentionGB`.
 */
function checkBatchFitsModel(file: string, batch: Batch, config: ModelConfig, maxAttentionGB: number): void {
  const rows = batch.input_ids.length;
  const width = batch.input_ids[0].length;
  if (config.model_type === 'roberta') {
    // Positions count from pad_token_id + 1 over the non-padding tokens of a row.
    const limit = config.max_position_embeddings - config.pad_token_id - 1;
    batch.input_ids.forEach((row, i) => {
      const tokens = row.filter((id) => id !== config.pad_token_id).length;
      if (tokens > limit) throw new UsageError(`${file}: "input_ids"[${i}] has ${tokens} tokens, the model has positions for ${limit} (max_position_embeddings ${config.max_position_embeddings})`);
    });
  } else if (config.position_biased_input && width > config.max_position_embeddings) {
    throw new UsageError(`${file}: rows of ${width} tokens, the model has absolute positions for ${config.max_position_embeddings} (max_position_embeddings)`);
  }
  if (batch.token_type_ids) {
    const types = Math.max(1, config.type_vocab_size);
    batch.token_type_ids.forEach((row, i) => row.forEach((v, j) => {
      if (v >= types) throw new UsageError(`${file}: "token_type_ids"[${i}][${j}] = ${v}, the model has ${types} token type${types === 1 ? '' : 's'} (type_vocab_size ${config.type_vocab_size})`);
    }));
  }
  const copies = config.model_type === 'deberta-v2' && config.relative_attention ? 3 : 1;
  const attentionGB = (rows * config.num_attention_heads * width * width * 4 * copies) / 1e9;
  if (attentionGB > maxAttentionGB) {
    throw new UsageError(`${file}: ${rows} rows of ${width} tokens need about ${attentionGB.toFixed(1)} GB of attention scores per layer, over --max-attention-gb ${maxAttentionGB}; send shorter or fewer rows, or raise the bound`);
  }
}

/** The output must be a file (or nothing yet) in a directory that exists: checked before the model runs. */
function checkOutputPath(output: string): void {
  const directory = path.dirname(path.resolve(output));
  if (!fs.existsSync(directory) || !fs.statSync(directory).isDirectory()) throw new UsageError(`--output ${output}: the directory ${directory} does not exist`);
  if (fs.existsSync(output) && !fs.statSync(output).isFile()) {
    throw new UsageError(`--output ${output}: exists and is ${fs.statSync(output).isDirectory() ? 'a directory' : 'not a regular file'}; give a file path`);
  }
}

function readBatch(file: string, vocabSize: number): Batch {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${file}: cannot read the input batch: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file}: not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`${file}: expected an object {"input_ids": [[...]], "attention_mask": [[...]]}`);
  }
  const record = json as Record<string, unknown>;
  const matrix = (key: string, check: (v: number) => boolean, what: string, width?: number, rows?: number): number[][] => {
    const value = record[key];
    if (!Array.isArray(value) || value.length === 0) throw new UsageError(`${file}: "${key}" must be a non-empty array of rows`);
    if (rows !== undefined && value.length !== rows) throw new UsageError(`${file}: "${key}" has ${value.length} rows, "input_ids" has ${rows}`);
    const expectedWidth = width ?? (Array.isArray(value[0]) ? value[0].length : -1);
    value.forEach((row, i) => {
      if (!Array.isArray(row) || row.length === 0) throw new UsageError(`${file}: "${key}"[${i}] must be a non-empty array`);
      if (row.length !== expectedWidth) throw new UsageError(`${file}: "${key}"[${i}] has ${row.length} entries, expected ${expectedWidth} (rows must be padded to one length)`);
      row.forEach((v, j) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || !check(v)) throw new UsageError(`${file}: "${key}"[${i}][${j}] = ${JSON.stringify(v)} is not ${what}`);
      });
    });
    return value as number[][];
  };
  const inputIds = matrix('input_ids', (v) => v >= 0 && v < vocabSize, `a token id in [0, ${vocabSize})`);
  const width = inputIds[0].length;
  const attentionMask = record.attention_mask === undefined
    ? inputIds.map((row) => row.map(() => 1))
    : matrix('attention_mask', (v) => v === 0 || v === 1, '0 or 1', width, inputIds.length);
  const batch: Batch = { input_ids: inputIds, attention_mask: attentionMask };
  if (record.token_type_ids !== undefined) batch.token_type_ids = matrix('token_type_ids', (v) => v >= 0, 'a non-negative segment id', width, inputIds.length);
  for (const key of Object.keys(record)) {
    if (!['input_ids', 'attention_mask', 'token_type_ids'].includes(key)) throw new UsageError(`${file}: unknown key "${key}" (expected input_ids, attention_mask, token_type_ids)`);
  }
  return batch;
}

function encode(model: PreTrainedModule, batch: Batch): Map<string, Tensor> {
  return noGrad(() => tidy(() => {
    const ids = (rows: number[][]) => tensor(rows, { dtype: 'int64' });
    const inputs = {
      inputIds: ids(batch.input_ids),
      attentionMask: ids(batch.attention_mask),
      tokenTypeIds: batch.token_type_ids ? ids(batch.token_type_ids) : undefined,
    };
    const out = (model as unknown as { forward(i: typeof inputs): { lastHiddenState: Tensor; logits?: Tensor } }).forward(inputs);
    const outputs = new Map<string, Tensor>([['last_hidden_state', out.lastHiddenState.to('float32')]]);
    // Only masked-LM heads have vocabulary logits worth writing.
    if (model.architecture.endsWith('ForMaskedLM') && out.logits) outputs.set('logits', out.logits.to('float32'));
    return outputs;
  }));
}

function cli() {
  return createCli('encode', 'Run a saved camemberta/HF model (DeBERTa-V2/V3 or RoBERTa) on a batch of token ids and write last_hidden_state (float32) and, for a masked-LM model, logits to a safetensors file.')
    .option('model', stringOption('model directory (config.json + model.safetensors or pytorch_model.bin)', { demandOption: true }))
    .option('input', stringOption('JSON {"input_ids": [[...]], "attention_mask": [[...]]} (rows padded to one length; attention_mask optional, token_type_ids optional)', { demandOption: true }))
    .option('output', stringOption('where to write the outputs as safetensors (written atomically)', { demandOption: true }))
    .option('threads', integerOption('--threads', 'CPU threads for libtorch', { min: 1 }, { defaultDescription: "libtorch's default" }))
    .option('max-attention-gb', numberOption('--max-attention-gb', 'refuse batches whose attention scores would pass this many GB per layer (checked before running)', { min: 0 }, { default: DEFAULT_MAX_ATTENTION_GB }));
}

function run(options: { model: string; input: string; output: string; threads?: number; maxAttentionGb: number }): void {
  checkOutputPath(options.output);
  if (options.threads) setNumThreads(options.threads);
  let model: PreTrainedModule;
  try {
    model = loadPretrained(options.model).model;
  } catch (error) {
    throw new UsageError(`cannot load the model: ${(error as Error).message}`);
  }
  try {
    model.eval();
    const batch = readBatch(options.input, model.config.vocab_size);
    checkBatchFitsModel(options.input, batch, model.config, options.maxAttentionGb);
    const outputs = encode(model, batch);
    try {
      const entries = new Map([...outputs].map(([name, t]) => [name, toSafetensorsEntry(t, name)] as const));
      try {
        writeSafetensors(options.output, entries, { format: 'pt' });
      } catch (error) {
        throw new UsageError(`--output ${options.output}: cannot write it: ${(error as Error).message}`);
      }
    } finally {
      for (const t of outputs.values()) t.dispose();
    }
  } finally {
    model.dispose();
  }
}

if (require.main === module) void runCli(cli(), run);

export { readBatch };
