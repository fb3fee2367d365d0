// Binary shard files of tokenized text.
//
// Layout of shard-NNNNN.bin (little-endian):
//   0   8  magic "CBTSHRD1"
//   8   4  token width in bytes: 2 (uint16, vocabulary <= 65,536 ids) or 4 (int32)
//   12  4  reserved (0)
//   16  8  token count T            (uint64)
//   24  8  sentence count S         (uint64)
//   32  8  document count D         (uint64)
//   40  8  index of the first document in the whole corpus (uint64)
//   48  16 reserved (0)
//   64     T token ids, then zero padding to a multiple of 8 bytes
//          S + 1 uint32: token offset where each sentence starts (the last is T)
//          D + 1 uint32: sentence offset where each document starts (the last is S)
// Tokens are written as they arrive into a uniquely named temporary file beside the shard; the index
// and header are written at the end and the file is put in place by io/atomic (flushed, renamed,
// directory flushed), so a shard that exists is whole.
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'fs';
import { replaceFileAtomicSync, temporarySibling } from '../io/atomic';

export const SHARD_MAGIC = 'CBTSHRD1';
export const SHARD_HEADER_BYTES = 64;

export interface ShardHeader {
  tokenWidth: 2 | 4;
  tokens: number;
  sentences: number;
  documents: number;
  firstDocument: number;
}

export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}.bin`;
}

/** Leftovers of a shard write that a killed run did not finish (temporary names of io/atomic). */
export function isUnfinishedShardFile(name: string): boolean {
  return /^\.shard-\d+\.bin\.(staging|tmp)-[0-9a-f]+$/.test(name) || /^shard-\d+\.bin\.partial$/.test(name);
}

export function tokenWidthFor(vocabSize: number): 2 | 4 {
  return vocabSize <= 65536 ? 2 : 4;
}

function encodeHeader(header: ShardHeader): Buffer {
  const buffer = Buffer.alloc(SHARD_HEADER_BYTES);
  buffer.write(SHARD_MAGIC, 0, 'latin1');
  buffer.writeUInt32LE(header.tokenWidth, 8);
  buffer.writeBigUInt64LE(BigInt(header.tokens), 16);
  buffer.writeBigUInt64LE(BigInt(header.sentences), 24);
  buffer.writeBigUInt64LE(BigInt(header.documents), 32);
  buffer.writeBigUInt64LE(BigInt(header.firstDocument), 40);
  return buffer;
}

export function decodeHeader(buffer: Buffer, path: string): ShardHeader {
  if (buffer.length < SHARD_HEADER_BYTES || buffer.toString('latin1', 0, 8) !== SHARD_MAGIC) {
    throw new Error(`${path} is not a shard file (bad magic)`);
  }
  const tokenWidth = buffer.readUInt32LE(8);
  if (tokenWidth !== 2 && tokenWidth !== 4) throw new Error(`${path}: bad token width ${tokenWidth}`);
  return {
    tokenWidth,
    tokens: Number(buffer.readBigUInt64LE(16)),
    sentences: Number(buffer.readBigUInt64LE(24)),
    documents: Number(buffer.readBigUInt64LE(32)),
    firstDocument: Number(buffer.readBigUInt64LE(40)),
  };
}

export function readShardHeader(path: string): ShardHeader {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(SHARD_HEADER_BYTES);
    readSync(fd, buffer, 0, SHARD_HEADER_BYTES, 0);
    return decodeHeader(buffer, path);
  } finally {
    closeSync(fd);
  }
}

function paddedTokenBytes(tokens: number, width: number): number {
  return Math.ceil((tokens * width) / 8) * 8;
}

/** A shard in memory: token ids and its two boundary indexes. */
export interface Shard {
  header: ShardHeader;
  tokens: Uint16Array | Int32Array;
  /** S + 1 token offsets */
  sentenceStarts: Uint32Array;
  /** D + 1 sentence offsets */
  documentStarts: Uint32Array;
}

/** File size of a shard with this header: header, padded tokens, then the two uint32 indexes. */
export function shardBytesFor(header: ShardHeader): number {
  return SHARD_HEADER_BYTES + paddedTokenBytes(header.tokens, header.tokenWidth) + 4 * (header.sentences + 1) + 4 * (header.documents + 1);
}

// readSync takes at most 2^31 - 1 bytes per call; shards can be larger than that.
const READ_CHUNK_BYTES = 1 << 30;

function readFully(fd: number, into: Uint8Array, position: number, path: string): void {
  for (let done = 0; done < into.byteLength; ) {
    const length = Math.min(READ_CHUNK_BYTES, into.byteLength - done);
    const read = readSync(fd, into, done, length, position + done);
    if (read === 0) throw new Error(`${path}: ended after ${position + done} bytes while reading`);
    done += read;
  }
}

/** Offsets must start at 0, never decrease, and end at `last`: else the index is corrupt. */
function checkOffsets(offsets: Uint32Array, last: number, what: string, path: string): void {
  if (offsets[0] !== 0 || offsets[offsets.length - 1] !== last) throw new Error(`${path}: the ${what} index does not span 0..${last}`);
  for (let i = 1; i < offsets.length; i++) {
    if (offsets[i] < offsets[i - 1]) throw new Error(`${path}: the ${what} index decreases at entry ${i}`);
  }
}

/**
 * Reads a whole shard through a file descriptor, straight into the arrays it returns (no copy
 * of the file in between, any size). The header is checked against the file size before
 * anything is allocated, and the two indexes against the counts.
 */
export function readShard(path: string): Shard {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(SHARD_HEADER_BYTES);
    const headRead = readSync(fd, head, 0, SHARD_HEADER_BYTES, 0);
    const header = decodeHeader(head.subarray(0, headRead), path);
    const size = fstatSync(fd).size;
    const expected = shardBytesFor(header);
    if (size !== expected) throw new Error(`${path}: ${size} bytes, the header implies ${expected}`);
    const body = new Uint8Array(size - SHARD_HEADER_BYTES);
    readFully(fd, body, SHARD_HEADER_BYTES, path);
    const tokenBytes = paddedTokenBytes(header.tokens, header.tokenWidth);
    const tokens = header.tokenWidth === 2
      ? new Uint16Array(body.buffer, 0, header.tokens)
      : new Int32Array(body.buffer, 0, header.tokens);
    const sentenceStarts = new Uint32Array(body.buffer, tokenBytes, header.sentences + 1);
    const documentStarts = new Uint32Array(body.buffer, tokenBytes + 4 * (header.sentences + 1), header.documents + 1);
    checkOffsets(sentenceStarts, header.tokens, 'sentence', path);
    checkOffsets(documentStarts, header.sentences, 'document', path);
    return { header, tokens, sentenceStarts, documentStarts };
  } finally {
    closeSync(fd);
  }
}

export class ShardWriter {
  private readonly fd: number;
  private position = SHARD_HEADER_BYTES;
  private tokens = 0;
  private readonly sentenceStarts: number[] = [0];
  private readonly documentStarts: number[] = [0];

  private readonly temporaryPath: string;
  private open = true;

  constructor(
    private readonly finalPath: string,
    private readonly tokenWidth: 2 | 4,
    private readonly firstDocument: number,
  ) {
    this.temporaryPath = temporarySibling(finalPath, 'staging');
    this.fd = openSync(this.temporaryPath, 'wx', 0o644);
  }

  get tokenCount(): number {
    return this.tokens;
  }

  /** Appends documents: their tokens, tokens per sentence and sentences per document. */
  append(tokens: Int32Array, sentenceLengths: Int32Array, documentSentences: Int32Array): void {
    const out = this.tokenWidth === 2 ? Uint16Array.from(tokens) : tokens;
    if (this.tokenWidth === 2) {
      for (let i = 0; i < tokens.length; i++) {
        if (tokens[i] < 0 || tokens[i] > 0xffff) throw new Error(`token id ${tokens[i]} does not fit in uint16`);
      }
    }
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    this.write(bytes);
    this.tokens += tokens.length;
    let offset = this.sentenceStarts[this.sentenceStarts.length - 1];
    for (let i = 0; i < sentenceLengths.length; i++) {
      offset += sentenceLengths[i];
      this.sentenceStarts.push(offset);
    }
    let sentences = this.documentStarts[this.documentStarts.length - 1];
    for (let i = 0; i < documentSentences.length; i++) {
      sentences += documentSentences[i];
      this.documentStarts.push(sentences);
    }
    if (offset !== this.tokens || sentences !== this.sentenceStarts.length - 1) {
      throw new Error('shard index out of step with its tokens');
    }
  }

  /** Writes the index and header, syncs, renames to the final name; returns the header. */
  finish(): ShardHeader {
    const padding = paddedTokenBytes(this.tokens, this.tokenWidth) - this.tokens * this.tokenWidth;
    if (padding) this.write(new Uint8Array(padding));
    if (this.tokens > 0xffffffff) throw new Error('shard has more than 2^32 tokens; use a smaller --shard-size-mb');
    this.write(new Uint8Array(Uint32Array.from(this.sentenceStarts).buffer));
    this.write(new Uint8Array(Uint32Array.from(this.documentStarts).buffer));
    const header: ShardHeader = {
      tokenWidth: this.tokenWidth,
      tokens: this.tokens,
      sentences: this.sentenceStarts.length - 1,
      documents: this.documentStarts.length - 1,
      firstDocument: this.firstDocument,
    };
    writeSync(this.fd, encodeHeader(header), 0, SHARD_HEADER_BYTES, 0);
    this.close();
    // The file is complete: the helper's temporary name is where it flushes and renames it from.
    replaceFileAtomicSync(this.finalPath, (temporary) => renameSync(this.temporaryPath, temporary));
    return header;
  }

  /** Closes and removes the unfinished file. */
  abandon(): void {
    this.close();
    rmSync(this.temporaryPath, { force: true });
  }

  private close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }

  private write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, this.position + done);
    }
    this.position += bytes.length;
  }
}
