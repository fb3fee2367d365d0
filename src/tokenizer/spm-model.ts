// Reads the parts of a SentencePiece `.model` file (a serialized `sentencepiece.ModelProto`) that the
// tokenizer layer needs: the pieces with their scores and types, the trainer's special-token ids and
// the normalizer settings. sentencepiece-js exposes only encode/decode and PieceToId, so the vocabulary
// (for the HF `tokenizer.json`, for id -> piece, for the word-start table of the fast encoder) has to
// come from the file itself. The protobuf wire format is small and stable; field numbers are those of
// sentencepiece_model.proto (checked against Python sentencepiece in test/tokenizer.test.ts).
import { createHash } from 'crypto';
import { readFileSync } from 'fs';

export enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface TrainerSpec {
  modelType: 'unigram' | 'bpe' | 'word' | 'char';
  vocabSize: number;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  splitByWhitespace: boolean;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
}

export interface NormalizerSpec {
  name: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainer: TrainerSpec;
  normalizer: NormalizerSpec;
  /** sha256 of the file bytes: identifies the tokenizer in shard manifests. */
  sha256: string;
  bytes: Uint8Array;
}

const MODEL_TYPES = ['unigram', 'bpe', 'word', 'char'] as const;

class WireReader {
  pos = 0;
  constructor(readonly buf: Uint8Array, private readonly end = buf.length, start = 0) {
    this.pos = start;
  }
  atEnd(): boolean {
    return this.pos >= this.end;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.buf[this.pos++];
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }
  int32(): number {
    // int32 fields are written as sign-extended 64-bit varints (-1 takes 10 bytes).
    return Number(BigInt.asIntN(32, this.varint()));
  }
  bool(): boolean {
    return this.varint() !== 0n;
  }
  float(): number {
    if (this.pos + 4 > this.end) throw new Error('truncated float');
    const value = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return value;
  }
  bytes(): Uint8Array {
    const length = Number(this.varint());
    if (this.pos + length > this.end) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
  string(): string {
    return Buffer.from(this.bytes()).toString('utf8');
  }
  sub(): WireReader {
    const length = Number(this.varint());
    if (this.pos + length > this.end) throw new Error('truncated sub-message');
    const reader = new WireReader(this.buf, this.pos + length, this.pos);
    this.pos += length;
    return reader;
  }
  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.pos += 8; break;
      case 2: {
        const length = Number(this.varint()); // read before adding: it moves pos
        this.pos += length;
        break;
      }
      case 5: this.pos += 4; break;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error('truncated field');
  }
  *fields(): Generator<[number, number]> {
    while (!this.atEnd()) {
      const tag = Number(this.varint());
      yield [tag >>> 3, tag & 7];
    }
  }
}

function readPiece(reader: WireReader): SentencePiece {
  const piece: SentencePiece = { piece: '', score: 0, type: PieceType.Normal };
  for (const [field, wire] of reader.fields()) {
    if (field === 1 && wire === 2) piece.piece = reader.string();
    else if (field === 2 && wire === 5) piece.score = reader.float();
    else if (field === 3 && wire === 0) piece.type = reader.int32() as PieceType;
    else reader.skip(wire);
  }
  return piece;
}

function readTrainer(reader: WireReader): TrainerSpec {
  const spec: TrainerSpec = {
    modelType: 'unigram', vocabSize: 8000, unkId: 0, bosId: 1, eosId: 2, padId: -1,
    unkPiece: '<unk>', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>',
    splitByWhitespace: true, treatWhitespaceAsSuffix: false, byteFallback: false,
  };
  for (const [field, wire] of reader.fields()) {
    if (wire === 0) {
      switch (field) {
        case 3: spec.modelType = MODEL_TYPES[reader.int32() - 1] ?? 'unigram'; continue;
        case 4: spec.vocabSize = reader.int32(); continue;
        case 22: spec.splitByWhitespace = reader.bool(); continue;
        case 24: spec.treatWhitespaceAsSuffix = reader.bool(); continue;
        case 35: spec.byteFallback = reader.bool(); continue;
        case 40: spec.unkId = reader.int32(); continue;
        case 41: spec.bosId = reader.int32(); continue;
        case 42: spec.eosId = reader.int32(); continue;
        case 43: spec.padId = reader.int32(); continue;
      }
    } else if (wire === 2) {
      switch (field) {
        case 45: spec.unkPiece = reader.string(); continue;
        case 46: spec.bosPiece = reader.string(); continue;
        case 47: spec.eosPiece = reader.string(); continue;
        case 48: spec.padPiece = reader.string(); continue;
      }
    }
    reader.skip(wire);
  }
  return spec;
}

function readNormalizer(reader: WireReader): NormalizerSpec {
  const spec: NormalizerSpec = {
    name: '', precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true,
  };
  for (const [field, wire] of reader.fields()) {
    if (field === 1 && wire === 2) spec.name = reader.string();
    else if (field === 2 && wire === 2) spec.precompiledCharsmap = reader.bytes();
    else if (field === 3 && wire === 0) spec.addDummyPrefix = reader.bool();
    else if (field === 4 && wire === 0) spec.removeExtraWhitespaces = reader.bool();
    else if (field === 5 && wire === 0) spec.escapeWhitespaces = reader.bool();
    else reader.skip(wire);
  }
  return spec;
}

export function parseSentencePieceModel(bytes: Uint8Array): SentencePieceModel {
  const reader = new WireReader(bytes);
  const pieces: SentencePiece[] = [];
  let trainer: TrainerSpec | undefined;
  let normalizer: NormalizerSpec | undefined;
  for (const [field, wire] of reader.fields()) {
    if (field === 1 && wire === 2) pieces.push(readPiece(reader.sub()));
    else if (field === 2 && wire === 2) trainer = readTrainer(reader.sub());
    else if (field === 3 && wire === 2) normalizer = readNormalizer(reader.sub());
    else reader.skip(wire);
  }
  if (pieces.length === 0 || !trainer) throw new Error('no pieces or no trainer_spec: not a SentencePiece model');
  return {
    pieces,
    trainer,
    normalizer: normalizer ?? readNormalizer(new WireReader(new Uint8Array(0))),
    sha256: createHash('sha256').update(bytes).digest('hex'),
    bytes,
  };
}

export function readSentencePieceModel(path: string): SentencePieceModel {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new Error(`cannot read SentencePiece model ${path}: ${(error as Error).message}`);
  }
  try {
    return parseSentencePieceModel(bytes);
  } catch (error) {
    throw new Error(`${path} is not a SentencePiece model: ${(error as Error).message}`);
  }
}
