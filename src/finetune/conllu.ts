// Word-level corpora for token classification and parsing: CoNLL-U (Universal Dependencies) and
// CoNLL-2003-style column files, read into sentences that keep every line they came from, so that
// predictions are written back as the same file with the predicted columns filled in.
//
// CoNLL-U (https://universaldependencies.org/format.html): ten tab-separated columns; a range line
// "3-4 du" is a multi-word token whose syntactic words "3 de", "4 le" follow it; "5.1" lines are
// empty nodes of the enhanced graph. The model sees the syntactic words (the lines with an integer
// ID): they carry UPOS, HEAD and DEPREL, and scoring counts them, as the CoNLL 2018 shared task does.
import * as fs from 'fs';
import { UsageError } from '../cli/args';

/** A problem in an input file: names the file and, when known, the line (1-based). */
export class DataError extends UsageError {
  override name = 'DataError';
  constructor(readonly file: string, readonly line: number | null, message: string) {
    super(`${file}${line === null ? '' : `:${line}`}: ${message}`);
  }
}

export const CONLLU_COLUMNS = ['ID', 'FORM', 'LEMMA', 'UPOS', 'XPOS', 'FEATS', 'HEAD', 'DEPREL', 'DEPS', 'MISC'] as const;

export interface CorpusLine {
  kind: 'comment' | 'word' | 'multiword' | 'empty-node' | 'columns';
  /** The line as read (without its newline). */
  text: string;
  /** Tab- (CoNLL-U) or whitespace- (CoNLL-2003) separated fields; [] for comments. */
  fields: string[];
  /** 1-based line number in the file. */
  line: number;
}

export interface Word {
  form: string;
  /** The fields of the word's line. */
  fields: string[];
  line: number;
  /** Index into Sentence.lines of the word's own line (to write predictions back). */
  lineIndex: number;
}

export interface Sentence {
  lines: CorpusLine[];
  words: Word[];
  /** Line number of the sentence's first line. */
  startLine: number;
}

export type CorpusFormat = 'conllu' | 'conll2003';

export interface Corpus {
  file: string;
  format: CorpusFormat;
  /** Column names: CoNLL-U's ten (or its `# global.columns`), or for CoNLL-2003 the positions "0", "1", ... */
  columns: string[];
  sentences: Sentence[];
  /** Lines after the last sentence that belong to none (a trailing CoNLL-2003 -DOCSTART-). */
  preamble: CorpusLine[];
}

function readText(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    throw new DataError(file, null, `cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!stat.isFile()) throw new DataError(file, null, 'not a regular file');
  const text = fs.readFileSync(file, 'utf8');
  if (text.includes('\uFFFD')) {
    const line = text.slice(0, text.indexOf('\uFFFD')).split('\n').length;
    throw new DataError(file, line, 'not valid UTF-8');
  }
  return text;
}

/** 'conllu' for a .conllu file or one whose first data line has ten tab-separated fields; else 'conll2003'. */
export function detectFormat(file: string, text?: string): CorpusFormat {
  if (/\.conllu$/i.test(file)) return 'conllu';
  const content = text ?? readText(file);
  for (const line of content.split('\n')) {
    const trimmed = line.replace(/\r$/, '');
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    return trimmed.split('\t').length === 10 ? 'conllu' : 'conll2003';
  }
  return 'conll2003';
}

export function readCorpus(file: string, format?: CorpusFormat): Corpus {
  const text = readText(file);
  const chosen = format ?? detectFormat(file, text);
  return chosen === 'conllu' ? parseConllu(file, text) : parseConll2003(file, text);
}

function splitLines(text: string): string[] {
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

const WORD_ID = /^[1-9][0-9]*$/;
const RANGE_ID = /^([1-9][0-9]*)-([1-9][0-9]*)$/;
const EMPTY_ID = /^([0-9]+)\.([1-9][0-9]*)$/;

export function parseConllu(file: string, text: string): Corpus {
  const sentences: Sentence[] = [];
  let columns: string[] = [...CONLLU_COLUMNS];
  let current: Sentence | null = null;
  let rangeEnd = 0;
  const finish = (lineNumber: number) => {
    if (!current) return;
    if (current.words.length === 0) throw new DataError(file, current.startLine, 'a sentence without any word line');
    if (rangeEnd > current.words.length) throw new DataError(file, lineNumber, `a multi-word token ends at word ${rangeEnd}, the sentence has ${current.words.length} words`);
    checkHeads(file, current);
    sentences.push(current);
    current = null;
    rangeEnd = 0;
  };
  const lines = splitLines(text);
  lines.forEach((raw, index) => {
    const lineNumber = index + 1;
    if (raw.trim() === '') {
      if (raw !== '') throw new DataError(file, lineNumber, 'a blank line holding spaces or tabs (sentences end with an empty line)');
      finish(lineNumber);
      return;
    }
    current ??= { lines: [], words: [], startLine: lineNumber };
    if (raw.startsWith('#')) {
      const match = /^#\s*global\.columns\s*=\s*(.+)$/.exec(raw);
      if (match) {
        columns = match[1].trim().split(/\s+/).map((name) => name.toUpperCase());
        if (columns[0] !== 'ID' || !columns.includes('FORM')) throw new DataError(file, lineNumber, 'global.columns must start with ID and include FORM');
      }
      current.lines.push({ kind: 'comment', text: raw, fields: [], line: lineNumber });
      return;
    }
    const fields = raw.split('\t');
    if (fields.length !== columns.length) {
      throw new DataError(file, lineNumber, `expected ${columns.length} tab-separated fields, found ${fields.length}${fields.length === 1 && /\s/.test(raw) ? ' (separated by spaces, not tabs?)' : ''}`);
    }
    fields.forEach((field, i) => {
      if (field === '') throw new DataError(file, lineNumber, `column ${columns[i]} is empty (write _ for no value)`);
    });
    const id = fields[0];
    if (WORD_ID.test(id)) {
      const expected = current.words.length + 1;
      if (Number(id) !== expected) throw new DataError(file, lineNumber, `word ID ${id} out of sequence (expected ${expected})`);
      current.words.push({ form: fields[columns.indexOf('FORM')], fields, line: lineNumber, lineIndex: current.lines.length });
      current.lines.push({ kind: 'word', text: raw, fields, line: lineNumber });
      return;
    }
    const range = RANGE_ID.exec(id);
    if (range) {
      const [start, end] = [Number(range[1]), Number(range[2])];
      if (start !== current.words.length + 1 || end <= start) throw new DataError(file, lineNumber, `multi-word token ${id} does not start at the next word (${current.words.length + 1}) or is not a range of at least two words`);
      rangeEnd = end;
      current.lines.push({ kind: 'multiword', text: raw, fields, line: lineNumber });
      return;
    }
    if (EMPTY_ID.test(id)) {
      current.lines.push({ kind: 'empty-node', text: raw, fields, line: lineNumber });
      return;
    }
    throw new DataError(file, lineNumber, `ID ${JSON.stringify(id)} is not a word number, a range (3-4) or an empty node (3.1)`);
  });
  finish(lines.length + 1);
  if (sentences.length === 0) throw new DataError(file, null, 'no sentences');
  return { file, format: 'conllu', columns, sentences, preamble: [] };
}

function checkHeads(file: string, sentence: Sentence): void {
  const headIndex = 6;
  const n = sentence.words.length;
  for (const word of sentence.words) {
    const head = word.fields[headIndex];
    if (head === undefined || head === '_') continue;
    if (!/^(0|[1-9][0-9]*)$/.test(head) || Number(head) > n) {
      throw new DataError(file, word.line, `HEAD ${JSON.stringify(head)} is not 0 or a word of the sentence (1..${n})`);
    }
  }
}

/**
 * CoNLL-2003 style: one token a line, whitespace-separated columns (word first, the tag last),
 * sentences separated by empty lines, `-DOCSTART-` lines (and the empty line after them) skipped.
 */
export function parseConll2003(file: string, text: string): Corpus {
  const sentences: Sentence[] = [];
  // -DOCSTART- lines wait here for the sentence they precede, so the output keeps them in place.
  let pending: CorpusLine[] = [];
  let current: Sentence | null = null;
  let width = -1;
  const lines = splitLines(text);
  lines.forEach((raw, index) => {
    const lineNumber = index + 1;
    if (raw.trim() === '') {
      if (current) sentences.push(current);
      current = null;
      return;
    }
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === '-DOCSTART-') {
      if (current) sentences.push(current);
      current = null;
      pending.push({ kind: 'comment', text: raw, fields, line: lineNumber });
      return;
    }
    if (width < 0) width = fields.length;
    if (fields.length !== width) throw new DataError(file, lineNumber, `expected ${width} whitespace-separated columns (as on the first token line), found ${fields.length}`);
    if (!current) {
      current = { lines: pending, words: [], startLine: lineNumber };
      pending = [];
    }
    current.words.push({ form: fields[0], fields, line: lineNumber, lineIndex: current.lines.length });
    current.lines.push({ kind: 'word', text: raw, fields, line: lineNumber });
  });
  if (current) sentences.push(current);
  if (sentences.length === 0) throw new DataError(file, null, 'no sentences');
  const columns = Array.from({ length: Math.max(width, 1) }, (_, i) => String(i));
  return { file, format: 'conll2003', columns, sentences, preamble: pending };
}

/**
 * The index of a column by name: CoNLL-U names (UPOS, XPOS, DEPREL..., case-insensitive) or, for
 * any format, a 0-based position; "last" is the last column (CoNLL-2003's NER tag).
 */
export function columnIndex(corpus: Corpus, name: string): number {
  if (name === 'last') return corpus.columns.length - 1;
  const upper = name.toUpperCase();
  const byName = corpus.columns.indexOf(upper);
  if (byName >= 0) return byName;
  if (/^[0-9]+$/.test(name) && Number(name) < corpus.columns.length) return Number(name);
  throw new DataError(corpus.file, null, `no column ${JSON.stringify(name)} (columns: ${corpus.columns.join(' ')}, or a position 0..${corpus.columns.length - 1}, or "last")`);
}

/** The label of every word from column `index`; "_" (no value) is an error naming the line. */
export function wordLabels(corpus: Corpus, index: number): string[][] {
  return corpus.sentences.map((sentence) => sentence.words.map((word) => {
    const value = word.fields[index];
    if (value === undefined || value === '_') {
      throw new DataError(corpus.file, word.line, `word ${JSON.stringify(word.form)} has no value in column ${corpus.columns[index]}`);
    }
    return value;
  }));
}

/** Head (0 = root) and relation of every word; a missing HEAD or DEPREL is an error naming the line. */
export function wordArcs(corpus: Corpus): { heads: number[]; relations: string[] }[] {
  if (corpus.format !== 'conllu') throw new DataError(corpus.file, null, 'dependency parsing needs a CoNLL-U file (HEAD and DEPREL columns)');
  const head = columnIndex(corpus, 'HEAD');
  const deprel = columnIndex(corpus, 'DEPREL');
  return corpus.sentences.map((sentence) => {
    const heads: number[] = [];
    const relations: string[] = [];
    for (const word of sentence.words) {
      if (word.fields[head] === '_' || word.fields[deprel] === '_') throw new DataError(corpus.file, word.line, `word ${JSON.stringify(word.form)} has no HEAD or DEPREL`);
      heads.push(Number(word.fields[head]));
      relations.push(word.fields[deprel]);
    }
    return { heads, relations };
  });
}

/**
 * The corpus as text with some columns of each word replaced: `values(sentence, word)` gives
 * column index -> value. Comments, multi-word tokens and empty nodes are written as read.
 */
export function formatCorpus(corpus: Corpus, values: (sentenceIndex: number, wordIndex: number) => Map<number, string>): string {
  const separator = corpus.format === 'conllu' ? '\t' : ' ';
  const out: string[] = [];
  corpus.sentences.forEach((sentence, s) => {
    const wordAt = new Map(sentence.words.map((word, w) => [word.lineIndex, w]));
    sentence.lines.forEach((line, i) => {
      const w = wordAt.get(i);
      if (w === undefined) {
        out.push(line.text);
        if (corpus.format === 'conll2003') out.push('');
        return;
      }
      const fields = [...line.fields];
      for (const [column, value] of values(s, w)) fields[column] = value;
      out.push(fields.join(separator));
    });
    out.push('');
  });
  for (const line of corpus.preamble) out.push(line.text, '');
  return `${out.join('\n')}\n`;
}
