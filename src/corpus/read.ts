// Streams documents out of corpus files: .txt / .txt.gz (documents separated by blank lines, or one
// document per line) and .jsonl / .jsonl.gz (one JSON object per line, its `text` field a document).
// Memory stays bounded by the largest document, whatever the corpus size.
//
// Bad input: invalid UTF-8 is replaced with U+FFFD and counted, with a warning naming the file; empty
// files and empty documents are skipped and counted; a file with NUL bytes (binary) and an unreadable
// path are errors naming the path; a line longer than `maxLineChars` is split at a space (or, with no
// space, at the limit) into several lines, counted and warned about, never dropped.
import { createReadStream, readdirSync, statSync } from 'fs';
import { join, resolve } from 'path';
import { createGunzip } from 'zlib';
import { Readable } from 'stream';

export class CorpusError extends Error {}

export interface CorpusOptions {
  /** each non-empty line is a document (else documents are separated by blank lines) */
  docsPerLine?: boolean;
  /** lines longer than this (in UTF-16 code units) are split; default 100,000 */
  maxLineChars?: number;
  /** a document is cut into several once it reaches this many characters, so that memory stays
   *  bounded whatever the input (default 10,000,000) */
  maxDocumentChars?: number;
  /** called with human-readable warnings (invalid UTF-8, long lines) */
  onWarning?: (message: string) => void;
  /** called with the number of bytes read from disk since the last call (progress) */
  onBytes?: (bytes: number) => void;
}

export interface CorpusStats {
  files: number;
  emptyFiles: number;
  inputBytes: number;
  documents: number;
  emptyDocuments: number;
  /** U+FFFD characters introduced by decoding invalid UTF-8 */
  invalidUtf8Replacements: number;
  filesWithInvalidUtf8: number;
  /** extra lines created by splitting over-long lines */
  longLineSplits: number;
  /** documents cut because they reached maxDocumentChars (each cut starts a new document) */
  longDocumentSplits: number;
}

export function emptyCorpusStats(): CorpusStats {
  return {
    files: 0, emptyFiles: 0, inputBytes: 0, documents: 0, emptyDocuments: 0,
    invalidUtf8Replacements: 0, filesWithInvalidUtf8: 0, longLineSplits: 0, longDocumentSplits: 0,
  };
}

export interface CorpusDocument {
  /** 0-based index among the non-empty documents of the whole corpus */
  index: number;
  file: string;
  /** the document's non-empty lines (paragraphs), trimmed */
  lines: string[];
}

const CORPUS_SUFFIXES = ['.txt', '.txt.gz', '.jsonl', '.jsonl.gz'];
const DEFAULT_MAX_LINE_CHARS = 100_000;
const DEFAULT_MAX_DOCUMENT_CHARS = 10_000_000;
// A JSONL record is parsed as one string; V8 strings stop at 2^29 characters, and holding more than
// this is not worth it for one document.
export const MAX_JSONL_RECORD_CHARS = 1 << 27;

function isCorpusFile(name: string): boolean {
  return CORPUS_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

/**
 * Expands files and directories (recursively, corpus suffixes only, sorted by path) into a file list.
 * A file named explicitly is read whatever its suffix (as text unless it ends in .jsonl[.gz]).
 */
export function listCorpusFiles(paths: readonly string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      throw new CorpusError(`cannot read directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const full = join(dir, entry.name);
      // Links to files are followed (not links to directories: no cycles); FIFOs, sockets and
      // devices are skipped (reading a FIFO blocks forever).
      let kind: { isDirectory(): boolean; isFile(): boolean } = entry;
      if (entry.isSymbolicLink()) {
        try {
          kind = statSync(full);
        } catch {
          continue; // a dangling link
        }
      }
      if (entry.isDirectory()) walk(full);
      else if (kind.isFile() && isCorpusFile(entry.name)) files.push(full);
    }
  };
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch (error) {
      throw new CorpusError(`cannot read input ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`);
    }
    if (stat.isDirectory()) walk(path);
    else if (stat.isFile()) files.push(path);
    else throw new CorpusError(`${path} is not a regular file or a directory (a FIFO, socket or device): the corpus must be files`);
  }
  if (files.length === 0) throw new CorpusError(`no corpus files (${CORPUS_SUFFIXES.join(', ')}) under ${paths.join(', ')}`);
  return files.map((file) => resolve(file));
}

/** Decodes a byte stream into lines, tracking invalid UTF-8, NUL bytes and over-long lines. */
async function* readLines(
  file: string,
  stats: CorpusStats,
  options: CorpusOptions,
  splitLongLines: boolean,
): AsyncGenerator<string> {
  const maxLineChars = options.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;
  let source: Readable;
  try {
    source = createReadStream(file, { highWaterMark: 1 << 20 });
    await new Promise<void>((resolveOpen, rejectOpen) => {
      source.once('open', () => resolveOpen());
      source.once('error', rejectOpen);
    });
  } catch (error) {
    throw new CorpusError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  source.on('data', (chunk: Buffer) => {
    stats.inputBytes += chunk.length;
    options.onBytes?.(chunk.length);
  });
  const stream: Readable = file.endsWith('.gz') ? source.pipe(createGunzip()) : source;
  if (stream !== source) source.on('error', (error) => stream.destroy(error));

  const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });
  let literalReplacements = 0;
  let decodedReplacements = 0;
  let tail: Buffer = Buffer.alloc(0); // last two bytes of the previous chunk, for EF BF BD across chunks
  let offset = 0;
  // The pieces of the line being read, joined once its newline arrives.
  let pendingParts: string[] = [];
  let pendingChars = 0;
  let linesRead = 0;
  let longSplits = 0;

  const countReplacements = (text: string): void => {
    for (let i = text.indexOf('\ufffd'); i >= 0; i = text.indexOf('\ufffd', i + 1)) decodedReplacements++;
  };
  // Splits an over-long line; returns the pieces (the last one at most maxLineChars long).
  const splitOverlong = (text: string): string[] => {
    const pieces: string[] = [];
    while (text.length > maxLineChars) {
      let cut = text.lastIndexOf(' ', maxLineChars);
      if (cut <= 0) cut = maxLineChars;
      // Never cut a surrogate pair in two.
      const code = text.charCodeAt(cut - 1);
      if (cut === maxLineChars && code >= 0xd800 && code <= 0xdbff) cut -= 1;
      pieces.push(text.slice(0, cut));
      text = text.slice(cut);
      longSplits++;
    }
    pieces.push(text);
    return pieces;
  };

  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const nul = chunk.indexOf(0);
      if (nul >= 0) throw new CorpusError(`${file} looks binary (NUL byte at offset ${offset + nul}); the corpus must be UTF-8 text`);
      const scan = tail.length ? Buffer.concat([tail, chunk]) : chunk;
      for (let i = scan.indexOf(0xef); i >= 0 && i + 2 < scan.length; i = scan.indexOf(0xef, i + 1)) {
        if (scan[i + 1] === 0xbf && scan[i + 2] === 0xbd && i + 2 >= tail.length) literalReplacements++;
      }
      tail = scan.subarray(Math.max(0, scan.length - 2));
      offset += chunk.length;
      const text = decoder.decode(chunk, { stream: true });
      if (text.indexOf('\ufffd') >= 0) countReplacements(text);
      // Only the new text is searched for newlines, and the line's chunks are joined once: a
      // line without newlines (a 200 MB JSONL record) is read in linear time.
      let start = 0;
      for (let newline = text.indexOf('\n'); newline >= 0; newline = text.indexOf('\n', start)) {
        pendingParts.push(text.slice(start, newline));
        const line = pendingParts.length === 1 ? pendingParts[0] : pendingParts.join('');
        pendingParts = [];
        pendingChars = 0;
        start = newline + 1;
        linesRead += 1;
        if (splitLongLines && line.length > maxLineChars) yield* splitOverlong(line);
        else yield line;
      }
      if (start < text.length) {
        pendingParts.push(start === 0 ? text : text.slice(start));
        pendingChars += text.length - start;
      }
      if (!splitLongLines && pendingChars > MAX_JSONL_RECORD_CHARS) {
        throw new CorpusError(`${file}:${linesRead + 1}: a record longer than ${MAX_JSONL_RECORD_CHARS} characters (${pendingChars} so far without a newline); split it into several records`);
      }
      if (splitLongLines && pendingChars > maxLineChars) {
        const pieces = splitOverlong(pendingParts.join(''));
        const last = pieces.pop()!;
        pendingParts = [last];
        pendingChars = last.length;
        yield* pieces;
      }
    }
    const rest = decoder.decode();
    if (rest.indexOf('\ufffd') >= 0) countReplacements(rest);
    const pending = pendingParts.join('') + rest;
    if (pending.length) yield* splitLongLines ? splitOverlong(pending) : [pending];
  } catch (error) {
    if (error instanceof CorpusError) throw error;
    throw new CorpusError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  } finally {
    source.destroy();
    const invalid = decodedReplacements - literalReplacements;
    if (invalid > 0) {
      stats.invalidUtf8Replacements += invalid;
      stats.filesWithInvalidUtf8 += 1;
      options.onWarning?.(`${file}: ${invalid} invalid UTF-8 sequence(s) replaced with U+FFFD`);
    }
    if (longSplits > 0) {
      stats.longLineSplits += longSplits;
      options.onWarning?.(`${file}: ${longSplits} split(s) of lines longer than ${maxLineChars} characters`);
    }
  }
}

function cleanLine(line: string): string {
  // '\r' of CRLF files, and surrounding whitespace, are not part of the text.
  return line.trim();
}

/** Streams the documents of `files` in order; `stats` is updated as it goes. */
export async function* readCorpus(
  files: readonly string[],
  stats: CorpusStats,
  options: CorpusOptions = {},
): AsyncGenerator<CorpusDocument> {
  const maxLineChars = options.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;
  const maxDocumentChars = options.maxDocumentChars ?? DEFAULT_MAX_DOCUMENT_CHARS;
  for (const file of files) {
    stats.files += 1;
    const documentsBefore = stats.documents + stats.emptyDocuments;
    const jsonl = file.endsWith('.jsonl') || file.endsWith('.jsonl.gz');
    let current: string[] = [];
    let currentChars = 0;
    let sawText = false;
    const finish = function* (): Generator<CorpusDocument> {
      if (current.length) {
        yield { index: stats.documents, file, lines: current };
        stats.documents += 1;
      } else if (sawText) {
        stats.emptyDocuments += 1;
      }
      current = [];
      currentChars = 0;
      sawText = false;
    };
    // Adds a line; a document that reaches maxDocumentChars goes out, its rest becomes the next one.
    const add = function* (line: string): Generator<CorpusDocument> {
      current.push(line);
      currentChars += line.length;
      if (currentChars >= maxDocumentChars) {
        yield* finish();
        stats.longDocumentSplits += 1;
      }
    };
    let lineNumber = 0;
    for await (const raw of readLines(file, stats, options, !jsonl)) {
      lineNumber += 1;
      if (jsonl) {
        if (raw.trim() === '') continue;
        let record: unknown;
        try {
          record = JSON.parse(raw);
        } catch (error) {
          throw new CorpusError(`${file}:${lineNumber}: not valid JSON (${(error as Error).message})`);
        }
        const text = (record as { text?: unknown } | null)?.text;
        if (typeof text !== 'string') throw new CorpusError(`${file}:${lineNumber}: no string "text" field`);
        sawText = true;
        for (const paragraph of text.split('\n')) {
          const line = cleanLine(paragraph);
          if (!line) continue;
          if (line.length > maxLineChars) {
            for (let at = 0; at < line.length; at += maxLineChars) yield* add(line.slice(at, at + maxLineChars));
            stats.longLineSplits += Math.ceil(line.length / maxLineChars) - 1;
          } else {
            yield* add(line);
          }
        }
        yield* finish();
        continue;
      }
      const line = cleanLine(raw);
      if (options.docsPerLine) {
        // Every line is a document: a blank one is an empty document, skipped and counted.
        if (line) current.push(line);
        else sawText = true;
        yield* finish();
      } else if (line) {
        yield* add(line);
      } else if (current.length) {
        yield* finish();
      }
    }
    yield* finish();
    if (stats.documents + stats.emptyDocuments === documentsBefore) stats.emptyFiles += 1;
  }
}
