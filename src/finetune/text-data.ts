// Sentence (or sentence-pair) classification data: JSONL, one object a line with `text`, optional
// `text_pair` and `label` (XNLI: premise/hypothesis pairs; PAWS-X: sentence1/sentence2), or TSV
// with a header row naming the same columns. Field names can be changed (--text-field ...).
import * as fs from 'fs';
import { DataError } from './conllu';

export interface TextExample {
  text: string;
  textPair?: string;
  /** The label as a string (numbers are written as in the file); undefined when the file has none (prediction). */
  label?: string;
  line: number;
  /** The parsed record (JSONL) or the row by header name (TSV), written back with the prediction. */
  record: Record<string, unknown>;
}

export interface TextFields {
  text: string;
  textPair: string;
  label: string;
}

export const DEFAULT_TEXT_FIELDS: TextFields = { text: 'text', textPair: 'text_pair', label: 'label' };

export type TextFormat = 'jsonl' | 'tsv';

export function detectTextFormat(file: string): TextFormat {
  return /\.(tsv|tab)$/i.test(file) ? 'tsv' : 'jsonl';
}

function labelText(file: string, line: number, value: unknown, field: string): string {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  throw new DataError(file, line, `"${field}" must be a non-empty string, a number or a boolean, got ${JSON.stringify(value)}`);
}

/** Reads the examples; `requireLabels` (training and evaluation) makes a missing label an error naming the line. */
export function readTextExamples(file: string, options: { fields?: TextFields; format?: TextFormat; requireLabels: boolean }): TextExample[] {
  const fields = options.fields ?? DEFAULT_TEXT_FIELDS;
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new DataError(file, null, `cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const lines = content.split('\n').map((line) => line.replace(/\r$/, ''));
  const format = options.format ?? detectTextFormat(file);
  const examples: TextExample[] = [];
  const take = (record: Record<string, unknown>, line: number) => {
    const text = record[fields.text];
    if (typeof text !== 'string') throw new DataError(file, line, `no "${fields.text}" string field`);
    const pair = record[fields.textPair];
    if (pair !== undefined && pair !== null && typeof pair !== 'string') throw new DataError(file, line, `"${fields.textPair}" must be a string`);
    const rawLabel = record[fields.label];
    if (rawLabel === undefined || rawLabel === null) {
      if (options.requireLabels) throw new DataError(file, line, `no "${fields.label}" field`);
    }
    examples.push({
      text,
      textPair: typeof pair === 'string' ? pair : undefined,
      label: rawLabel === undefined || rawLabel === null ? undefined : labelText(file, line, rawLabel, fields.label),
      line,
      record,
    });
  };
  if (format === 'jsonl') {
    lines.forEach((raw, index) => {
      if (raw.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch (error) {
        throw new DataError(file, index + 1, `not a JSON line: ${(error as Error).message}`);
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DataError(file, index + 1, 'a line must be a JSON object');
      take(value as Record<string, unknown>, index + 1);
    });
  } else {
    const headerIndex = lines.findIndex((line) => line.trim() !== '');
    if (headerIndex < 0) throw new DataError(file, null, 'empty file (a TSV file needs a header row)');
    const header = lines[headerIndex].split('\t');
    if (!header.includes(fields.text)) throw new DataError(file, headerIndex + 1, `the header row has no "${fields.text}" column (columns: ${header.join(', ')})`);
    for (let index = headerIndex + 1; index < lines.length; index++) {
      const raw = lines[index];
      if (raw.trim() === '') continue;
      const cells = raw.split('\t');
      if (cells.length !== header.length) throw new DataError(file, index + 1, `expected ${header.length} tab-separated fields as in the header, found ${cells.length}`);
      const record: Record<string, unknown> = {};
      header.forEach((name, i) => { record[name] = cells[i] === '' && name === fields.label ? undefined : cells[i]; });
      take(record, index + 1);
    }
  }
  if (examples.length === 0) throw new DataError(file, null, 'no examples');
  return examples;
}
