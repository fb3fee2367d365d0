// Vocabulary extension: new word-initial pieces ("▁word") appended after every existing id of a
// SentencePiece unigram model, so that every old id keeps its piece and continued pretraining only
// grows the embedding rows (src/pretrain/init.ts starts each new row as the mean of the rows of
// the pieces the old tokenizer made of the word).
//
// A new piece is an ordinary (NORMAL) piece whose score is just above the best segmentation the
// old model had for the word (the sum of its pieces' scores): Viterbi then picks it for the word
// itself and, elsewhere, only where the old segmentation already spelled the word at a word start
// to within that margin. Text without the new words keeps its ids. Python sentencepiece and the
// `tokenizers` Unigram model (transformers' tokenizer.json) decode the scores alike.
//
// Added tokens past the pieces (DeBERTa-V3's [MASK] at len(spm)) become CONTROL pieces at their
// own ids first, so the new pieces come after them and no id moves.
import * as fs from 'fs';
import * as path from 'path';
import { listCorpusFiles, readCorpus, emptyCorpusStats } from '../corpus/read';
import { replaceDirectoryAtomicSync } from '../io/atomic';
import { PieceType, SentencePieceModel, parseSentencePieceModel, readSentencePieceModel } from './spm-model';
import { SentencePieceTokenizer, WORD_BOUNDARY } from './sentencepiece';
import { readHfTokenizerFiles, resolveSpecialTokens } from './special-tokens';
import { saveHfTokenizer } from './hf-files';

export const EXTENSION_FILE = 'extension.json';
/** How far above the old segmentation's score a new piece sits (float32 rounding is ~1e-6 here). */
export const SCORE_MARGIN = 0.01;

/** A problem with the input: names the file (and line) and becomes exit code 2 at the CLI. */
export class ExtendError extends Error {}

export interface AddedPiece {
  word: string;
  piece: string;
  id: number;
  score: number;
  /** ids and pieces the old tokenizer made of the word */
  oldIds: number[];
  oldPieces: string[];
  /** corpus occurrences (with --from-corpus) */
  count?: number;
}

export interface ExtendResult {
  outputDir: string;
  base: { file: string; sha256: string; pieces: number; ids: number };
  added: AddedPiece[];
  skipped: { word: string; reason: string }[];
  /** ids of the new tokenizer (pieces + added tokens) */
  ids: number;
}

/** The spm.model of a tokenizer directory (or the file itself). */
export function tokenizerFileOf(location: string): string {
  const resolved = path.resolve(location);
  if (fs.existsSync(resolved) && fs.statSync(resolved).isDirectory()) {
    for (const name of ['spm.model', 'tokenizer.model', 'sentencepiece.bpe.model']) {
      if (fs.existsSync(path.join(resolved, name))) return path.join(resolved, name);
    }
    throw new ExtendError(`${resolved}: no SentencePiece model (spm.model, tokenizer.model, sentencepiece.bpe.model)`);
  }
  if (!fs.existsSync(resolved)) throw new ExtendError(`${resolved}: no such file or directory`);
  return resolved;
}

/** Words of a file, one per line (blank lines and # comments skipped); a line with spaces is an error. */
export function readWordList(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ExtendError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const words: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const word = line.trim();
    if (word === '' || word.startsWith('#')) return;
    if (/\s/u.test(word)) throw new ExtendError(`${file}:${i + 1}: ${JSON.stringify(word)} holds whitespace: a piece is one word`);
    if (word.includes(WORD_BOUNDARY)) throw new ExtendError(`${file}:${i + 1}: ${JSON.stringify(word)} holds ${WORD_BOUNDARY}, SentencePiece's word boundary`);
    words.push(word);
  });
  if (words.length === 0) throw new ExtendError(`${file}: no words (one per line)`);
  return words;
}

/** A word as it starts a whitespace-separated token: letters (and inner hyphens or apostrophes), trailing punctuation dropped. */
const WORD = /^[\p{L}\p{M}]+(?:[-'’][\p{L}\p{M}]+)*/u;

/**
 * The `count` words of a corpus worth a piece: those the tokenizer splits into at least
 * `minPieces` pieces, ranked by the tokens a piece saves over the corpus, occurrences x
 * (pieces - 1) (frequent and long-split words first).
 */
export async function wordsFromCorpus(inputs: string[], sp: SentencePieceTokenizer, options: { count: number; minPieces?: number; minCount?: number }):
  Promise<{ word: string; count: number; pieces: number }[]> {
  let files: string[];
  try {
    files = listCorpusFiles(inputs);
  } catch (error) {
    throw new ExtendError((error as Error).message);
  }
  const counts = new Map<string, number>();
  for await (const document of readCorpus(files, emptyCorpusStats())) {
    for (const line of document.lines) {
      for (const token of line.normalize('NFC').split(/\s+/u)) {
        const match = WORD.exec(token);
        if (match) counts.set(match[0], (counts.get(match[0]) ?? 0) + 1);
      }
    }
  }
  const minPieces = options.minPieces ?? 2;
  const minCount = options.minCount ?? 2;
  const scored: { word: string; count: number; pieces: number; saved: number }[] = [];
  for (const [word, count] of counts) {
    if (count < minCount) continue;
    const pieces = sp.encode(word).length;
    if (pieces >= minPieces) scored.push({ word, count, pieces, saved: count * (pieces - 1) });
  }
  scored.sort((a, b) => b.saved - a.saved || b.count - a.count || (a.word < b.word ? -1 : a.word > b.word ? 1 : 0));
  return scored.slice(0, options.count).map(({ word, count, pieces }) => ({ word, count, pieces }));
}

// ---- the protobuf --------------------------------------------------------------------------------

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function readVarint(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  let pos = at;
  for (;;) {
    const byte = bytes[pos++];
    if (byte === undefined) throw new Error('truncated varint');
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, pos];
    scale *= 128;
  }
}

/** One `ModelProto.pieces` entry (field 1): piece (1), score (2, float), type (3). */
export function encodePieceField(piece: string, score: number, type: PieceType): Uint8Array {
  const text = Buffer.from(piece, 'utf8');
  const float = Buffer.alloc(4);
  float.writeFloatLE(score, 0);
  const message = [0x0a, ...varint(text.length), ...text, 0x15, ...float, 0x18, ...varint(type)];
  return Uint8Array.from([0x0a, ...varint(message.length), ...message]);
}

/** The byte offset just past the last `pieces` field: new pieces go there, so ids follow on. */
function endOfPieces(bytes: Uint8Array): number {
  let pos = 0;
  let end = -1;
  while (pos < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    let next: number;
    if (wire === 0) next = readVarint(bytes, afterTag)[1];
    else if (wire === 1) next = afterTag + 8;
    else if (wire === 5) next = afterTag + 4;
    else if (wire === 2) {
      const [length, afterLength] = readVarint(bytes, afterTag);
      next = afterLength + length;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (field === 1) end = next;
    pos = next;
  }
  if (end < 0) throw new Error('no pieces');
  return end;
}

/** The model with `pieces` appended after its last piece (every other byte as it was). */
export function appendPieces(model: SentencePieceModel, pieces: { piece: string; score: number; type: PieceType }[]): SentencePieceModel {
  const at = endOfPieces(model.bytes);
  const inserted = pieces.map((p) => encodePieceField(p.piece, p.score, p.type));
  const bytes = Buffer.concat([Buffer.from(model.bytes.subarray(0, at)), ...inserted.map((b) => Buffer.from(b)), Buffer.from(model.bytes.subarray(at))]);
  return parseSentencePieceModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

// ---- extension -----------------------------------------------------------------------------------

export interface ExtendOptions {
  /** a tokenizer directory (spm.model + HF files) or an spm.model */
  model: string;
  words: { word: string; count?: number }[];
  outputDir: string;
}

/**
 * Writes into outputDir (atomically: all of it or nothing) the extended spm.model, the HF
 * tokenizer files and extension.json (what was added, each word's old pieces). Every new word is
 * checked to encode as its one new piece before anything is written.
 */
export async function extendTokenizer(options: ExtendOptions): Promise<ExtendResult> {
  const file = tokenizerFileOf(options.model);
  let model: SentencePieceModel;
  try {
    model = readSentencePieceModel(file);
  } catch (error) {
    throw new ExtendError((error as Error).message);
  }
  if (model.trainer.modelType !== 'unigram') throw new ExtendError(`${file}: a ${model.trainer.modelType} model; only unigram models can be extended`);
  const hfFiles = readHfTokenizerFiles(file);
  const special = resolveSpecialTokens(model, hfFiles);
  const old = await SentencePieceTokenizer.load(file);
  const oldIds = special.vocabSize;

  // Added tokens past the pieces become CONTROL pieces at their ids (they must be contiguous).
  const controls = special.added.filter((token) => token.id >= model.pieces.length);
  controls.forEach((token, i) => {
    if (token.id !== model.pieces.length + i) throw new ExtendError(`${file}: added token ${token.content} at id ${token.id} leaves a gap after the ${model.pieces.length} pieces: new pieces could not follow every id`);
  });
  const minScore = Math.min(...model.pieces.filter((p) => p.type === PieceType.Normal).map((p) => p.score));

  const added: AddedPiece[] = [];
  const skipped: { word: string; reason: string }[] = [];
  const seen = new Set<string>();
  for (const entry of options.words) {
    const word = entry.word.normalize('NFC');
    if (seen.has(word)) {
      skipped.push({ word, reason: 'given twice' });
      continue;
    }
    seen.add(word);
    const piece = `${WORD_BOUNDARY}${word}`;
    const existing = old.pieceToId(piece);
    if (existing !== undefined) {
      skipped.push({ word, reason: `already a piece (id ${existing})` });
      continue;
    }
    const ids = Array.from(old.encode(word));
    if (ids.length === 1) {
      skipped.push({ word, reason: `already one piece (${old.idToPiece(ids[0])}, id ${ids[0]})` });
      continue;
    }
    const segmentation = ids.reduce((sum, id) => sum + model.pieces[id].score, 0);
    // Above the old segmentation; never below the lowest score, which sets the unknown-piece penalty.
    const score = Math.fround(Math.max(segmentation + SCORE_MARGIN, minScore));
    added.push({ word, piece, id: oldIds + added.length, score, oldIds: ids, oldPieces: ids.map((id) => old.idToPiece(id) ?? ''), count: entry.count });
  }
  if (added.length === 0) throw new ExtendError(`nothing to add: ${skipped.map((s) => `${s.word} (${s.reason})`).join(', ') || 'no words'}`);

  const extended = appendPieces(model, [
    ...controls.map((token) => ({ piece: token.content, score: 0, type: PieceType.Control })),
    ...added.map((a) => ({ piece: a.piece, score: a.score, type: PieceType.Normal })),
  ]);
  const newSpecial = resolveSpecialTokens(extended, hfFiles);
  for (const role of ['pad', 'cls', 'sep', 'unk', 'mask'] as const) {
    if (newSpecial.ids[role] !== special.ids[role]) throw new Error(`internal: ${role} moved from id ${special.ids[role]} to ${newSpecial.ids[role]}`);
  }
  const maxLength = typeof hfFiles.tokenizerConfig?.model_max_length === 'number' && hfFiles.tokenizerConfig.model_max_length < 1e9
    ? hfFiles.tokenizerConfig.model_max_length as number : 512;
  const outputDir = path.resolve(options.outputDir);
  const result: ExtendResult = {
    outputDir, base: { file, sha256: model.sha256, pieces: model.pieces.length, ids: oldIds }, added, skipped, ids: newSpecial.vocabSize,
  };
  const problems: string[] = [];
  // The staged spm.model is loaded and each word encoded with it before the directory is placed.
  const staged = path.join(path.dirname(outputDir), `.${path.basename(outputDir)}.extend-check-${process.pid}.model`);
  fs.mkdirSync(path.dirname(outputDir), { recursive: true });
  fs.writeFileSync(staged, extended.bytes);
  try {
    const check = await SentencePieceTokenizer.load(staged);
    for (const a of added) {
      const ids = Array.from(check.encode(a.word));
      if (ids.length !== 1 || ids[0] !== a.id) problems.push(`${a.word}: encodes as ${ids.map((id) => check.idToPiece(id)).join(' ')} with the new piece (expected ${a.piece})`);
    }
    for (let id = 0; id < model.pieces.length; id++) {
      if (check.idToPiece(id) !== model.pieces[id].piece) problems.push(`id ${id} moved`);
    }
  } finally {
    fs.rmSync(staged, { force: true });
  }
  if (problems.length) throw new ExtendError(`the extended tokenizer does not encode the new words as one piece each: ${problems.slice(0, 5).join('; ')}`);
  replaceDirectoryAtomicSync(outputDir, (staging) => {
    saveHfTokenizer(staging, extended, newSpecial, maxLength);
    fs.writeFileSync(path.join(staging, EXTENSION_FILE), `${JSON.stringify({ ...result, outputDir: undefined }, null, 2)}\n`);
  });
  return result;
}
