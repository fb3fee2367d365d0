// manifest.json of a prepared directory: its types, and reading it without trusting it.
//
// readManifest checks the file's structure and that its totals are the sums of its shards;
// checkShardFiles checks every shard's size and header against its entry (64 bytes read per shard,
// so a manifest that claims more than the files hold is refused from the file sizes, at once);
// verifyShardChecksums reads every shard whole and compares its sha256 (prepare --verify).
import { createHash } from 'crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'fs';
import { join } from 'path';
import type { CorpusStats } from './corpus';
import { HELD_OUT_SELECTION } from './held-out';
import { SHARD_HEADER_BYTES, decodeHeader, shardBytesFor } from './shard';

export const MANIFEST_FORMAT = 'camemberta-shards';
// Version 2 added the held-out split (`heldOut`, `counts.heldOutDocuments`, each shard's
// `heldOutDocuments`); readManifest still reads version 1, as data with no held-out part.
export const MANIFEST_VERSION = 2;
const READABLE_MANIFEST_VERSIONS = [1, 2];
export const MANIFEST_FILE = 'manifest.json';

export interface ShardEntry {
  file: string;
  documents: number;
  sentences: number;
  tokens: number;
  firstDocument: number;
  bytes: number;
  sha256: string;
  /** the shard's held-out documents, as indices within the shard, ascending */
  heldOutDocuments: number[];
}

export interface PrepareSettings {
  inputs: { path: string; bytes: number; mtimeMs: number }[];
  docsPerLine: boolean;
  maxLineChars: number;
  locale: string;
  shardChars: number;
  tokenizerSha256: string;
}

export interface Manifest {
  format: string;
  formatVersion: number;
  tokenizer: {
    file: string;
    sha256: string;
    pieces: number;
    vocabSize: number;
    tokenWidth: 2 | 4;
    specialTokens: { pad: number; cls: number; sep: number; unk: number; mask: number };
    specialTokenStrings: { pad: string; cls: string; sep: string; unk: string; mask: string };
  };
  settings: PrepareSettings;
  /** how the held-out documents were chosen (fraction 0: none are) */
  heldOut: { fraction: number; selection: string };
  counts: CorpusStats & { sentences: number; tokens: number; shards: number; shardsReused: number; heldOutDocuments: number };
  shards: ShardEntry[];
}

/** manifest.json, or a shard it lists, is missing, malformed or disagrees with the files. */
export class ManifestError extends Error {}

const SHARD_NAME = /^shard-\d{5,}\.bin$/;

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Reads and checks `dir`/manifest.json (structure and totals; not the shard files). */
export function readManifest(dir: string): Manifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) throw new ManifestError(`${path} does not exist: run prepare first (or let it finish)`);
  const text = readFileSync(path, 'utf8');
  if (text.trim() === '') throw new ManifestError(`${path} is empty: run prepare again`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ManifestError(`${path} is not valid JSON (${(error as Error).message}): run prepare again`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ManifestError(`${path}: expected a JSON object`);
  const manifest = parsed as Manifest;
  if (manifest.format !== MANIFEST_FORMAT || !READABLE_MANIFEST_VERSIONS.includes(manifest.formatVersion)) {
    throw new ManifestError(`${path}: unsupported format ${String(manifest.format)} v${String(manifest.formatVersion)} (expected ${MANIFEST_FORMAT} v${READABLE_MANIFEST_VERSIONS.join(' or v')})`);
  }
  if (manifest.formatVersion === 1 && Array.isArray(manifest.shards)) {
    // Before held-out splits: every document is a training document.
    manifest.heldOut = { fraction: 0, selection: HELD_OUT_SELECTION };
    if (typeof manifest.counts === 'object' && manifest.counts !== null) manifest.counts.heldOutDocuments = 0;
    for (const shard of manifest.shards) if (typeof shard === 'object' && shard !== null) shard.heldOutDocuments = [];
  }
  const problems = manifestProblems(manifest);
  if (problems.length) throw new ManifestError(`${path}: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; and ${problems.length - 3} more` : ''}`);
  return manifest;
}

function manifestProblems(manifest: Manifest): string[] {
  const problems: string[] = [];
  if (!Array.isArray(manifest.shards)) return ['no "shards" list'];
  const counts = manifest.counts as unknown as Record<string, unknown> | undefined;
  if (typeof counts !== 'object' || counts === null) return ['no "counts" object'];
  const tokenizer = manifest.tokenizer as Manifest['tokenizer'] | undefined;
  if (typeof tokenizer !== 'object' || tokenizer === null || (tokenizer.tokenWidth !== 2 && tokenizer.tokenWidth !== 4)) return ['no "tokenizer" object with a tokenWidth of 2 or 4'];
  const special = tokenizer.specialTokens as Record<string, unknown> | undefined;
  for (const name of ['pad', 'cls', 'sep', 'unk', 'mask']) {
    if (!isCount(special?.[name])) problems.push(`tokenizer.specialTokens.${name} is not a token id`);
  }
  if (typeof manifest.heldOut !== 'object' || manifest.heldOut === null) problems.push('no "heldOut" object');
  let nextDocument = 0;
  const sums = { documents: 0, sentences: 0, tokens: 0, heldOutDocuments: 0 };
  manifest.shards.forEach((shard, index) => {
    const where = `shards[${index}]`;
    if (typeof shard !== 'object' || shard === null) {
      problems.push(`${where} is not an object`);
      return;
    }
    if (typeof shard.file !== 'string' || !SHARD_NAME.test(shard.file)) problems.push(`${where}.file ${JSON.stringify(shard.file)} is not a shard file name (shard-NNNNN.bin)`);
    for (const key of ['documents', 'sentences', 'tokens', 'firstDocument', 'bytes'] as const) {
      if (!isCount(shard[key])) problems.push(`${where}.${key} is not a count`);
    }
    if (shard.firstDocument !== nextDocument) problems.push(`${where}.firstDocument is ${shard.firstDocument}, the shards before it end at document ${nextDocument}`);
    const heldOut = shard.heldOutDocuments;
    if (!Array.isArray(heldOut) || heldOut.some((d, i) => !isCount(d) || d >= shard.documents || (i > 0 && d <= heldOut[i - 1]))) {
      problems.push(`${where}.heldOutDocuments is not an ascending list of documents of the shard`);
    }
    nextDocument = shard.firstDocument + shard.documents;
    sums.documents += shard.documents;
    sums.sentences += shard.sentences;
    sums.tokens += shard.tokens;
    sums.heldOutDocuments += Array.isArray(heldOut) ? heldOut.length : 0;
  });
  for (const key of ['documents', 'sentences', 'tokens', 'heldOutDocuments'] as const) {
    if (counts[key] !== sums[key]) problems.push(`counts.${key} is ${JSON.stringify(counts[key])} but the shards hold ${sums[key]}`);
  }
  if (counts.shards !== manifest.shards.length) problems.push(`counts.shards is ${JSON.stringify(counts.shards)} but ${manifest.shards.length} shards are listed`);
  return problems;
}

/**
 * Checks every shard file against its manifest entry: the file exists, has the entry's size and
 * the size its header implies, and the header's counts and token width are the entry's. Reads 64
 * bytes per shard.
 */
export function checkShardFiles(dir: string, manifest: Manifest): void {
  for (const entry of manifest.shards) {
    const path = join(dir, entry.file);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw new ManifestError(`${path}, listed in ${join(dir, MANIFEST_FILE)}, cannot be opened: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    try {
      const size = fstatSync(fd).size;
      if (size !== entry.bytes) throw new ManifestError(`${path}: ${size} bytes, ${MANIFEST_FILE} says ${entry.bytes}`);
      const head = Buffer.alloc(SHARD_HEADER_BYTES);
      const header = decodeHeader(head.subarray(0, readSync(fd, head, 0, SHARD_HEADER_BYTES, 0)), path);
      const mismatched = (['tokens', 'sentences', 'documents', 'firstDocument'] as const).filter((key) => header[key] !== entry[key]);
      if (mismatched.length) {
        throw new ManifestError(`${path}: its header and ${MANIFEST_FILE} disagree on ${mismatched.map((key) => `${key} (${header[key]} vs ${entry[key]})`).join(', ')}`);
      }
      if (header.tokenWidth !== manifest.tokenizer.tokenWidth) throw new ManifestError(`${path}: ${header.tokenWidth}-byte tokens, ${MANIFEST_FILE} says ${manifest.tokenizer.tokenWidth}`);
      if (shardBytesFor(header) !== size) throw new ManifestError(`${path}: ${size} bytes, its header implies ${shardBytesFor(header)}`);
    } finally {
      closeSync(fd);
    }
  }
}

/** sha256 of a file, read in 8 MB pieces (a shard can be larger than is worth holding). */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(8 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) hash.update(buffer.subarray(0, read));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** checkShardFiles, then every shard's sha256 against the manifest's. Returns the bytes read. */
export function verifyShardChecksums(dir: string, manifest: Manifest): number {
  checkShardFiles(dir, manifest);
  let bytes = 0;
  for (const entry of manifest.shards) {
    const path = join(dir, entry.file);
    const actual = sha256File(path);
    if (actual !== entry.sha256) throw new ManifestError(`${path}: sha256 ${actual}, ${MANIFEST_FILE} says ${entry.sha256} (the file changed after prepare wrote it)`);
    bytes += entry.bytes;
  }
  return bytes;
}
