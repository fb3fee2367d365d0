// safetensors read and write at the byte level (no tensor library involved).
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N, then N bytes
// of UTF-8 JSON — `{"__metadata__": {str: str}?, name: {"dtype", "shape", "data_offsets": [begin,
// end]}, ...}` — then the data section; offsets are relative to the start of the data section.
//
// The writer reproduces the reference implementation byte for byte (safetensors/src/tensor.rs,
// `prepare`): tensors sorted by descending dtype rank (its `Dtype` enum is declared in increasing
// alignment order) then by name, compact JSON with `__metadata__` first, the header padded with
// spaces to a multiple of 8 so the data section starts 8-byte aligned.
//
// The reader is as strict as the reference's `Metadata::validate`: tensors must tile the data
// section exactly (no overlap, no gap, no trailing bytes) and each byte range must equal
// numel * itemsize. Every size is checked against the real file size before anything is
// allocated, so a truncated or hostile file is an Error naming the file and tensor, never a huge
// allocation or a crash.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeFileAtomicSync } from './atomic';

/** The reference caps the header at 100 MB; a larger length field is corrupt or hostile. */
export const MAX_HEADER_LENGTH = 100_000_000;

/**
 * Tensors per file. Real checkpoints hold thousands (a 671B-parameter MoE about 47,000 over all
 * its shards); a header within the 100 MB cap can list a million, which took 34 s and 2.3 GB to
 * parse. Counted in the raw JSON before parsing, so the rejection itself is cheap.
 */
export const MAX_TENSORS_PER_FILE = 131_072;

/** Every dtype name the format defines, in the reference's enum order (increasing alignment). */
const FORMAT_DTYPES = [
  ['BOOL', 8], ['F4', 4], ['F6_E2M3', 6], ['F6_E3M2', 6], ['U8', 8], ['I8', 8],
  ['F8_E5M2', 8], ['F8_E4M3', 8], ['F8_E8M0', 8], ['F8_E4M3FNUZ', 8], ['F8_E5M2FNUZ', 8],
  ['I16', 16], ['U16', 16], ['F16', 16], ['BF16', 16], ['I32', 32], ['U32', 32], ['F32', 32],
  ['C64', 64], ['F64', 64], ['I64', 64], ['U64', 64],
] as const;

type FormatDtype = (typeof FORMAT_DTYPES)[number][0];
/** Sub-byte types pack several elements per byte with row padding; nothing here needs them. */
type SubByteDtype = 'F4' | 'F6_E2M3' | 'F6_E3M2';
export type SafetensorsDtype = Exclude<FormatDtype, SubByteDtype>;

const DTYPE_RANK = new Map<string, number>(FORMAT_DTYPES.map(([name], rank) => [name, rank]));
const DTYPE_BITS = new Map<string, number>(FORMAT_DTYPES.map(([name, bits]) => [name, bits]));

export function isSafetensorsDtype(name: unknown): name is SafetensorsDtype {
  return typeof name === 'string' && DTYPE_BITS.has(name) && DTYPE_BITS.get(name)! % 8 === 0;
}

/** Bytes per element. */
export function dtypeItemSize(dtype: SafetensorsDtype): number {
  const bits = DTYPE_BITS.get(dtype);
  if (bits === undefined || bits % 8 !== 0) throw new Error(`not a supported safetensors dtype: ${String(dtype)}`);
  return bits / 8;
}

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Little-endian, C-order element bytes. */
  data: Uint8Array;
}

export interface SafetensorsHeaderEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string> | undefined;
  /** N, the JSON length including padding. */
  headerLength: number;
  /** Absolute file offset of the data section (8 + N). */
  dataStart: number;
  dataLength: number;
  /** In file order (ascending data offsets). */
  entries: Map<string, SafetensorsHeaderEntry>;
}

export interface SafetensorsContents {
  metadata: Record<string, string> | undefined;
  /** In file order. */
  tensors: Map<string, SafetensorsTensor>;
}

/**
 * What the writer takes: a tensor, or one whose bytes are produced only when it is written
 * (`data` a function), so that saving a model never holds more than one tensor's bytes in memory.
 */
export interface SafetensorsSource {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The bytes, or a function called once, when the tensor is written, returning them. */
  data: Uint8Array | (() => Uint8Array);
}

export type SafetensorsEntries =
  | Map<string, SafetensorsSource>
  | Record<string, SafetensorsSource>
  | Iterable<readonly [string, SafetensorsSource]>;

export class SafetensorsError extends Error {
  constructor(readonly source: string, message: string, readonly tensor?: string) {
    super(`${source}: ${tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `}${message}`);
    this.name = 'SafetensorsError';
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Parses and validates the header only; reads 8 + N bytes of the file. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    return readHeaderFromFd(fd, fs.fstatSync(fd).size, file);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads a whole file (or only the tensors named in `names`). Each tensor gets its own
 * ArrayBuffer starting at offset 0, so typed views over it are always aligned.
 */
export function readSafetensors(file: string, options: { names?: Iterable<string> } = {}): SafetensorsContents {
  let metadata: Record<string, string> | undefined;
  const tensors = new Map(iterateSafetensors(file, { ...options, onHeader: (header) => { metadata = header.metadata; } }));
  return { metadata, tensors };
}

/**
 * The tensors of a file one at a time, in file order, each read only when the iteration reaches
 * it: a consumer that converts and drops each one holds one tensor's bytes at a time, whatever
 * the file size. The header is validated (and `onHeader` called) before the first tensor.
 */
export function* iterateSafetensors(
  file: string,
  options: { names?: Iterable<string>; onHeader?: (header: SafetensorsHeader) => void } = {},
): Generator<[string, SafetensorsTensor]> {
  const fd = fs.openSync(file, 'r');
  try {
    const header = readHeaderFromFd(fd, fs.fstatSync(fd).size, file);
    const wanted = options.names === undefined ? undefined : new Set(options.names);
    if (wanted) {
      for (const name of wanted) {
        if (!header.entries.has(name)) throw new SafetensorsError(file, 'not in the file', name);
      }
    }
    options.onHeader?.(header);
    for (const [name, entry] of header.entries) {
      if (wanted && !wanted.has(name)) continue;
      const [begin, end] = entry.dataOffsets;
      const data = new Uint8Array(end - begin);
      readExactly(fd, data, header.dataStart + begin, file, name);
      yield [name, { dtype: entry.dtype, shape: entry.shape, data }];
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Parses a complete safetensors file held in memory. Tensor data are zero-copy views into
 * `bytes`; use `typedArrayOf` (which copies when a view is misaligned) to read elements.
 */
export function readSafetensorsFromBuffer(bytes: Uint8Array, source = '<buffer>'): SafetensorsContents {
  const header = parseFramedHeader(bytes, source);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, entry] of header.entries) {
    const [begin, end] = entry.dataOffsets;
    tensors.set(name, {
      dtype: entry.dtype,
      shape: entry.shape,
      data: bytes.subarray(header.dataStart + begin, header.dataStart + end),
    });
  }
  return { metadata: header.metadata, tensors };
}

/** Header of an in-memory file. */
export function readSafetensorsHeaderFromBuffer(bytes: Uint8Array, source = '<buffer>'): SafetensorsHeader {
  return parseFramedHeader(bytes, source);
}

function parseFramedHeader(bytes: Uint8Array, source: string): SafetensorsHeader {
  const headerLength = checkHeaderLength(bytes.subarray(0, 8), bytes.byteLength, source);
  return parseHeaderJson(bytes.subarray(8, 8 + headerLength), headerLength, bytes.byteLength, source);
}

function readHeaderFromFd(fd: number, fileSize: number, source: string): SafetensorsHeader {
  const lengthField = new Uint8Array(Math.min(8, fileSize));
  readExactly(fd, lengthField, 0, source);
  const headerLength = checkHeaderLength(lengthField, fileSize, source);
  const json = new Uint8Array(headerLength);
  readExactly(fd, json, 8, source);
  return parseHeaderJson(json, headerLength, fileSize, source);
}

/** Validates the u64 length field against the cap and the real size; returns N. */
function checkHeaderLength(lengthField: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    throw new SafetensorsError(source, `file is ${fileSize} bytes, shorter than the 8-byte header length field (truncated or not a safetensors file)`);
  }
  const n = Buffer.from(lengthField.buffer, lengthField.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_LENGTH)) {
    throw new SafetensorsError(source, `header length ${n} exceeds the ${MAX_HEADER_LENGTH}-byte limit (corrupt or not a safetensors file)`);
  }
  const headerLength = Number(n);
  if (8 + headerLength > fileSize) {
    throw new SafetensorsError(source, `header length ${headerLength} runs past the end of the file (${fileSize} bytes; truncated?)`);
  }
  return headerLength;
}

const DATA_OFFSETS_KEY = Buffer.from('"data_offsets"');

/** How many times `needle` occurs in `bytes` (an upper bound of the entries: each has one such key). */
function countOccurrences(bytes: Uint8Array, needle: Buffer): number {
  const haystack = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let count = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) count++;
  return count;
}

function parseHeaderJson(json: Uint8Array, headerLength: number, fileSize: number, source: string): SafetensorsHeader {
  if (headerLength > MAX_HEADER_LENGTH) throw new SafetensorsError(source, `header length ${headerLength} exceeds the ${MAX_HEADER_LENGTH}-byte limit`);
  const listed = countOccurrences(json, DATA_OFFSETS_KEY);
  if (listed > MAX_TENSORS_PER_FILE) {
    throw new SafetensorsError(source, `header lists ${listed} tensors, over the limit of ${MAX_TENSORS_PER_FILE} per file (corrupt or hostile; shard the checkpoint)`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw new SafetensorsError(source, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SafetensorsError(source, `header is not valid JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(parsed)) {
    throw new SafetensorsError(source, `header must be a JSON object, got ${describe(parsed)}`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;

  let metadata: Record<string, string> | undefined;
  const entries: [string, SafetensorsHeaderEntry][] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(value, source);
      continue;
    }
    entries.push([name, parseEntry(name, value, dataLength, source)]);
  }

  // Tiling check, as the reference does after sorting by offsets: each tensor must begin exactly
  // where the previous one ended, and the last must end at the end of the file.
  entries.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let covered = 0;
  let previous: string | undefined;
  for (const [name, entry] of entries) {
    const [begin, end] = entry.dataOffsets;
    if (begin < covered) {
      throw new SafetensorsError(source, `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous)} which ends at ${covered}`, name);
    }
    if (begin > covered) {
      throw new SafetensorsError(source, `data_offsets [${begin}, ${end}] leave bytes ${covered}..${begin} of the data section covered by no tensor`, name);
    }
    covered = end;
    previous = name;
  }
  if (covered !== dataLength) {
    throw new SafetensorsError(source, `the data section has ${dataLength} bytes but the tensors cover only ${covered} (trailing bytes after ${previous === undefined ? 'the header' : JSON.stringify(previous)})`);
  }
  return { metadata, headerLength, dataStart, dataLength, entries: new Map(entries) };
}

function parseMetadata(value: unknown, source: string): Record<string, string> | undefined {
  if (value === null) return undefined;
  if (!isPlainObject(value)) {
    throw new SafetensorsError(source, `__metadata__ must be an object of strings, got ${describe(value)}`);
  }
  const metadata: Record<string, string> = {};
  for (const [key, text] of Object.entries(value)) {
    if (typeof text !== 'string') {
      throw new SafetensorsError(source, `__metadata__[${JSON.stringify(key)}] must be a string, got ${describe(text)}`);
    }
    metadata[key] = text;
  }
  return metadata;
}

function parseEntry(name: string, value: unknown, dataLength: number, source: string): SafetensorsHeaderEntry {
  const fail = (message: string): never => { throw new SafetensorsError(source, message, name); };
  if (!isPlainObject(value)) return fail(`entry must be an object with dtype, shape and data_offsets, got ${describe(value)}`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;

  if (typeof dtype !== 'string') return fail(`dtype must be a string, got ${describe(dtype)}`);
  if (!DTYPE_BITS.has(dtype)) {
    return fail(`unknown dtype ${JSON.stringify(dtype)} (the format defines ${FORMAT_DTYPES.map(([d]) => d).join(', ')})`);
  }
  if (!isSafetensorsDtype(dtype)) return fail(`dtype ${dtype} is a packed sub-byte type, which is not supported`);

  if (!Array.isArray(shape)) return fail(`shape must be an array of non-negative integers, got ${describe(shape)}`);
  shape.forEach((dim, axis) => {
    if (!isNonNegativeSafeInteger(dim)) fail(`shape[${axis}] must be a non-negative integer, got ${describe(dim)}`);
  });

  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeSafeInteger)) {
    return fail(`data_offsets must be [begin, end] with non-negative integers, got ${describe(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) return fail(`data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataLength) {
    return fail(`data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes; truncated?)`);
  }
  // BigInt: a hostile shape may overflow doubles; the comparison must be exact.
  const numel = (shape as number[]).reduce((n, dim) => n * BigInt(dim), 1n);
  const expected = numel * BigInt(dtypeItemSize(dtype));
  if (expected !== BigInt(end - begin)) {
    return fail(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expected}`);
  }
  return { dtype, shape: shape as number[], dataOffsets: [begin, end] };
}

function readExactly(fd: number, into: Uint8Array, position: number, source: string, tensor?: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const got = fs.readSync(fd, into, done, into.byteLength - done, position + done);
    if (got === 0) {
      throw new SafetensorsError(source, `unexpected end of file at byte ${position + done} (file changed while reading?)`, tensor);
    }
    done += got;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * The complete file as one buffer. Prefer `writeSafetensors` for large models: it streams each
 * tensor to disk instead of concatenating them.
 */
export function serializeSafetensors(entries: SafetensorsEntries, metadata?: Record<string, string>): Buffer {
  const { header, ordered } = prepare(entries, metadata);
  return Buffer.concat([header, ...ordered.map(([name, tensor]) => bytesOf(name, tensor))]);
}

/**
 * Writes `entries` to `file` atomically (temporary file in the same directory, fsync, rename),
 * byte-identical to Python's `safetensors.torch.save_file` for the same tensors and metadata
 * (metadata with several keys: the reference writes them in hash order, so only the set matches).
 */
export function writeSafetensors(file: string, entries: SafetensorsEntries, metadata?: Record<string, string>): void {
  const { header, ordered } = prepare(entries, metadata);
  writeFileAtomicSync(file, (append) => {
    append(header);
    for (const [name, tensor] of ordered) append(bytesOf(name, tensor));
  });
}

/** The bytes of a source, produced now if lazy, checked against the size its header entry promised. */
function bytesOf(name: string, tensor: SafetensorsSource): Uint8Array {
  if (tensor.data instanceof Uint8Array) return tensor.data;
  const data = tensor.data();
  const expected = byteLengthOf(tensor);
  if (!(data instanceof Uint8Array) || BigInt(data.byteLength) !== expected) {
    throw new SafetensorsError('<writeSafetensors>', `data() returned ${data instanceof Uint8Array ? `${data.byteLength} bytes` : describe(data)} but ${tensor.dtype} ${JSON.stringify(tensor.shape)} needs ${expected}`, name);
  }
  return data;
}

function byteLengthOf(tensor: SafetensorsSource): bigint {
  return tensor.shape.reduce((n, dim) => n * BigInt(dim), 1n) * BigInt(dtypeItemSize(tensor.dtype));
}

function prepare(entries: SafetensorsEntries, metadata: Record<string, string> | undefined) {
  const source = '<writeSafetensors>';
  const list = entryList(entries);
  const seen = new Set<string>();
  for (const [name, tensor] of list) {
    const fail = (message: string): never => { throw new SafetensorsError(source, message, name); };
    if (name === '__metadata__') fail('the name __metadata__ is reserved for the header metadata');
    if (/\p{Cs}/u.test(name)) fail('name is not valid Unicode (lone surrogate)');
    if (seen.has(name)) fail('given twice');
    seen.add(name);
    if (!isSafetensorsDtype(tensor.dtype)) fail(`unsupported dtype ${describe(tensor.dtype)}`);
    if (!Array.isArray(tensor.shape) || !tensor.shape.every(isNonNegativeSafeInteger)) {
      fail(`shape must be non-negative integers, got ${describe(tensor.shape)}`);
    }
    if (!(tensor.data instanceof Uint8Array) && typeof tensor.data !== 'function') {
      fail('data must be a Uint8Array of the raw little-endian bytes, or a function returning one');
    }
    const expected = byteLengthOf(tensor);
    if (tensor.data instanceof Uint8Array && expected !== BigInt(tensor.data.byteLength)) {
      fail(`data has ${tensor.data.byteLength} bytes but ${tensor.dtype} ${JSON.stringify(tensor.shape)} needs ${expected}`);
    }
  }
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new SafetensorsError(source, `metadata[${JSON.stringify(key)}] must be a string, got ${describe(value)}`);
    }
  }

  // The reference: descending dtype rank, then name in UTF-8 byte order (Rust String ordering,
  // which differs from JS UTF-16 ordering above U+FFFF).
  const ordered = list
    .map(([name, tensor]) => ({ name, tensor, key: Buffer.from(name, 'utf8') }))
    .sort((a, b) => DTYPE_RANK.get(b.tensor.dtype)! - DTYPE_RANK.get(a.tensor.dtype)! || Buffer.compare(a.key, b.key))
    .map(({ name, tensor }) => [name, tensor] as const);

  // Built by hand so key order is exactly the reference's: __metadata__ first, then tensors in
  // data order, each as {"dtype","shape","data_offsets"}. JSON.stringify escapes strings the
  // same way serde_json does (short escapes for \b\f\n\r\t, lowercase \u00XX for other controls).
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const [name, tensor] of ordered) {
    const end = offset + Number(byteLengthOf(tensor));
    parts.push(`${JSON.stringify(name)}:{"dtype":${JSON.stringify(tensor.dtype)},"shape":[${tensor.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_LENGTH) throw new SafetensorsError(source, `header would be ${padded} bytes, over the ${MAX_HEADER_LENGTH}-byte limit readers enforce`);
  const header = Buffer.alloc(8 + padded, 0x20); // pad with spaces, as the reference does
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, ordered };
}

function entryList(entries: SafetensorsEntries): (readonly [string, SafetensorsSource])[] {
  if (entries instanceof Map) return [...entries];
  if (typeof (entries as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(entries as Iterable<readonly [string, SafetensorsSource]>)];
  }
  return Object.entries(entries as Record<string, SafetensorsSource>);
}

// ---------------------------------------------------------------------------------------------
// Element access

export type SafetensorsTypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/**
 * A typed view over a tensor's elements (F16/BF16 as raw Uint16 bits, C64 as interleaved
 * Float32 pairs, F8 types and BOOL as bytes). Copies only when the bytes are misaligned for the
 * element type (possible for views from `readSafetensorsFromBuffer`).
 */
export function typedArrayOf(tensor: SafetensorsTensor): SafetensorsTypedArray {
  if (os.endianness() !== 'LE') throw new Error('safetensors data are little-endian; big-endian hosts are not supported');
  const { dtype } = tensor;
  const construct = TYPED_ARRAY[dtype];
  let bytes = tensor.data;
  if (bytes.byteOffset % construct.BYTES_PER_ELEMENT !== 0) bytes = bytes.slice();
  return new construct(bytes.buffer, bytes.byteOffset, bytes.byteLength / construct.BYTES_PER_ELEMENT);
}

/** Builds a tensor entry from a typed array, checking that its length matches the shape. */
export function tensorFromTypedArray(dtype: SafetensorsDtype, shape: number[], values: ArrayBufferView): SafetensorsTensor {
  const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const needed = shape.reduce((n, dim) => n * dim, 1) * dtypeItemSize(dtype);
  if (needed !== data.byteLength) {
    throw new Error(`tensorFromTypedArray: ${dtype} ${JSON.stringify(shape)} needs ${needed} bytes, got ${data.byteLength}`);
  }
  return { dtype, shape: [...shape], data };
}

type TypedArrayConstructor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): SafetensorsTypedArray;
  readonly BYTES_PER_ELEMENT: number;
};
const TYPED_ARRAY: Record<SafetensorsDtype, TypedArrayConstructor> = {
  BOOL: Uint8Array, U8: Uint8Array, I8: Int8Array,
  F8_E5M2: Uint8Array, F8_E4M3: Uint8Array, F8_E8M0: Uint8Array, F8_E4M3FNUZ: Uint8Array, F8_E5M2FNUZ: Uint8Array,
  I16: Int16Array, U16: Uint16Array, F16: Uint16Array, BF16: Uint16Array,
  I32: Int32Array, U32: Uint32Array, F32: Float32Array,
  C64: Float32Array, F64: Float64Array, I64: BigInt64Array, U64: BigUint64Array,
};

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints (model.safetensors.index.json)

export const SINGLE_FILE_NAME = 'model.safetensors';
export const SHARDED_INDEX_NAME = 'model.safetensors.index.json';

export interface ShardedIndex {
  /** The index's free-form "metadata" object (usually {"total_size": bytes}). */
  metadata: Record<string, unknown>;
  /** Tensor name -> shard file name (relative to the checkpoint directory). */
  weightMap: Map<string, string>;
  /** Distinct shard files in order of first appearance. */
  shards: string[];
}

export function readShardedIndex(dir: string, indexName = SHARDED_INDEX_NAME): ShardedIndex {
  const file = path.join(dir, indexName);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new SafetensorsError(file, `cannot read the shard index: ${(error as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new SafetensorsError(file, `index must be a JSON object, got ${describe(parsed)}`);
  const { metadata = {}, weight_map: weightMap } = parsed as Record<string, unknown>;
  if (!isPlainObject(metadata)) throw new SafetensorsError(file, `"metadata" must be an object, got ${describe(metadata)}`);
  if (!isPlainObject(weightMap)) throw new SafetensorsError(file, `"weight_map" must be an object of tensor name -> shard file, got ${describe(weightMap)}`);
  const map = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, shard] of Object.entries(weightMap)) {
    // A shard is a file next to the index: refuse paths, which could read anything on disk.
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..') {
      throw new SafetensorsError(file, `weight_map entry must name a file in the same directory, got ${describe(shard)}`, name);
    }
    map.set(name, shard);
    if (!shards.includes(shard)) shards.push(shard);
  }
  return { metadata: metadata as Record<string, unknown>, weightMap: map, shards };
}

/**
 * Loads every shard listed by the index. The shards must agree with the index exactly: each
 * tensor is in the shard the index names, and no shard holds a tensor the index does not list.
 */
export function readShardedSafetensors(dir: string, indexName = SHARDED_INDEX_NAME): { index: ShardedIndex; tensors: Map<string, SafetensorsTensor> } {
  const index = readShardedIndex(dir, indexName);
  return { index, tensors: new Map(iterateShardedSafetensors(dir, indexName, index)) };
}

/**
 * The tensors of a sharded checkpoint one at a time (see iterateSafetensors). Each shard's header
 * is checked against the index before any of its data is read.
 */
export function* iterateShardedSafetensors(
  dir: string, indexName = SHARDED_INDEX_NAME, index = readShardedIndex(dir, indexName),
): Generator<[string, SafetensorsTensor]> {
  const seen = new Set<string>();
  for (const shard of index.shards) {
    const file = path.join(dir, shard);
    const onHeader = (header: SafetensorsHeader) => {
      for (const name of header.entries.keys()) {
        const listed = index.weightMap.get(name);
        if (listed !== shard) {
          throw new SafetensorsError(file, listed === undefined ? `not listed in ${indexName}` : `${indexName} places it in ${listed}`, name);
        }
        seen.add(name);
      }
    };
    yield* iterateSafetensors(file, { onHeader });
  }
  for (const [name, shard] of index.weightMap) {
    if (!seen.has(name)) throw new SafetensorsError(path.join(dir, shard), `listed in ${indexName} but missing from the shard`, name);
  }
}

/** Reads `dir/model.safetensors`, or the sharded checkpoint when only the index exists. */
export function readSafetensorsCheckpoint(dir: string): Map<string, SafetensorsTensor> {
  const single = path.join(dir, SINGLE_FILE_NAME);
  if (fs.existsSync(single)) return readSafetensors(single).tensors;
  if (fs.existsSync(path.join(dir, SHARDED_INDEX_NAME))) return readShardedSafetensors(dir).tensors;
  throw new Error(`${dir}: neither ${SINGLE_FILE_NAME} nor ${SHARDED_INDEX_NAME} exists`);
}

// ---------------------------------------------------------------------------------------------

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeSafeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
