#!/usr/bin/env node
// Feature extraction: runs a saved model on a JSON batch of token ids and writes its outputs as
// safetensors. Outside tools use it to check our forward pass against theirs.
//   node dist/encode.js --model DIR --input batch.json --output out.safetensors
import * as fs from 'fs';
import { Tensor, tensor, tidy, noGrad, setNumThreads } from './tensor';
import { loadPretrained, writeSafetensors, toSafetensorsEntry } from './io';
import { PreTrainedModule } from './models';
import { createCli, integerOption, runCli, stringOption, UsageError } from './cli/args';

interface Batch {
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids?: number[][];
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
    .option('threads', integerOption('--threads', 'CPU threads for libtorch', { min: 1 }, { defaultDescription: "libtorch's default" }));
}

function run(options: { model: string; input: string; output: string; threads?: number }): void {
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
    const outputs = encode(model, batch);
    try {
      const entries = new Map([...outputs].map(([name, t]) => [name, toSafetensorsEntry(t, name)] as const));
      writeSafetensors(options.output, entries, { format: 'pt' });
    } finally {
      for (const t of outputs.values()) t.dispose();
    }
  } finally {
    model.dispose();
  }
}

if (require.main === module) void runCli(cli(), run);

export { readBatch };
