// Reading torch.save zip archives of a dict of tensors (pytorch_model.bin) in TypeScript.
//
// Why not libtorch's C++ unpickler: it replaces collections.OrderedDict by None (it only expects
// one inside tensor metadata), and torch.save(model.state_dict()), which is what transformers'
// save_pretrained wrote for years, pickles exactly an OrderedDict.
//
// Format: a zip archive (entries stored, not compressed) holding `<archive>/data.pkl`, a pickle
// whose tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls
// with the storage as a persistent id ('storage', <dtype>Storage, key, location, numel), and
// `<archive>/data/<key>` holding each storage's raw little-endian bytes. Only what state dicts
// use is implemented; anything else is an error naming the file.
//
// Files of any size: the archive is read through a file descriptor, never whole. The central
// directory and data.pkl are read first, then one storage at a time into a reused scratch
// buffer, so the extra memory is bounded by the largest storage (a CamemBERTa-base checkpoint
// with optimizer state is over 2 GiB, past readFileSync's limit). Nothing read is trusted:
// every offset and size is checked against the file before it is used.
import * as fs from 'fs';
import { Tensor } from './tensor';
import { DType, itemSize } from './dtype';
import { fromBytes } from './functions';

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

class Global {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string { return `${this.module}.${this.name}`; }
}
class StorageRef {
  constructor(readonly dtype: DType, readonly key: string, readonly numel: number | undefined) {}
}
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}
const MARK = Symbol('mark');

// ---- zip ---------------------------------------------------------------------------------------

/** data.pkl of a state dict is a few hundred bytes per tensor; a larger one is corrupt or hostile. */
const MAX_PICKLE_BYTES = 1 << 28;
/** Nested dicts deeper than this are not a state dict (and a cycle would recurse forever). */
const MAX_NESTING = 64;

interface ZipEntry {
  /** Absolute file offset of the entry's bytes. */
  start: number;
  size: number;
}

class ArchiveReader {
  readonly size: number;

  constructor(readonly fd: number, readonly file: string) {
    this.size = fs.fstatSync(fd).size;
  }

  fail(message: string): never {
    throw new Error(`${this.file}: ${message}`);
  }

  /** `length` bytes at `position` into `into` (a fresh buffer when omitted); past the end is an error. */
  read(position: number, length: number, what: string, into?: Buffer): Buffer {
    if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0 || position + length > this.size) {
      this.fail(`${what} (bytes ${position}..${position + length}) runs past the end of the ${this.size}-byte file (truncated?)`);
    }
    const buffer = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const got = fs.readSync(this.fd, buffer, done, length - done, position + done);
      if (got === 0) this.fail(`unexpected end of file at byte ${position + done} reading ${what} (file changed while reading?)`);
      done += got;
    }
    return buffer;
  }

  /** Name -> location of every entry, from the (zip64) end of central directory records. */
  entries(): Map<string, ZipEntry> {
    const tailLength = Math.min(this.size, 65557 + 20);
    const tail = this.read(this.size - tailLength, tailLength, 'the end of central directory');
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    }
    if (eocd < 0) this.fail('not a zip archive (no end of central directory); is it a legacy, non-zip torch.save file?');
    let count = tail.readUInt16LE(eocd + 10);
    let directorySize = tail.readUInt32LE(eocd + 12);
    let directoryOffset = tail.readUInt32LE(eocd + 16);
    if (directoryOffset === 0xffffffff || count === 0xffff || directorySize === 0xffffffff) {
      const locator = eocd - 20;
      if (locator < 0 || tail.readUInt32LE(locator) !== 0x07064b50) this.fail('zip64 archive without a zip64 locator');
      const recordAt = Number(tail.readBigUInt64LE(locator + 8));
      const record = this.read(recordAt, 56, 'the zip64 end of central directory');
      if (record.readUInt32LE(0) !== 0x06064b50) this.fail('bad zip64 end of central directory');
      count = Number(record.readBigUInt64LE(32));
      directorySize = Number(record.readBigUInt64LE(40));
      directoryOffset = Number(record.readBigUInt64LE(48));
    }
    // Each central record is at least 46 bytes: a count the directory cannot hold is corrupt.
    if (count * 46 > directorySize) this.fail(`central directory of ${directorySize} bytes cannot hold ${count} entries (corrupt)`);
    const directory = this.read(directoryOffset, directorySize, 'the central directory');
    const entries = new Map<string, ZipEntry>();
    let offset = 0;
    for (let i = 0; i < count; i++) {
      if (offset + 46 > directory.length || directory.readUInt32LE(offset) !== 0x02014b50) this.fail(`corrupt central directory at byte ${directoryOffset + offset}`);
      const method = directory.readUInt16LE(offset + 10);
      let size = directory.readUInt32LE(offset + 20);
      const nameLength = directory.readUInt16LE(offset + 28);
      const extraLength = directory.readUInt16LE(offset + 30);
      const commentLength = directory.readUInt16LE(offset + 32);
      let local = directory.readUInt32LE(offset + 42);
      const extraEnd = offset + 46 + nameLength + extraLength;
      if (extraEnd > directory.length) this.fail(`corrupt central directory entry at byte ${directoryOffset + offset}`);
      const name = directory.toString('utf8', offset + 46, offset + 46 + nameLength);
      // zip64 extra field (id 1): the 64-bit sizes / offset, in that order, for fields set to 0xffffffff.
      for (let e = offset + 46 + nameLength; e + 4 <= extraEnd;) {
        const id = directory.readUInt16LE(e);
        const length = directory.readUInt16LE(e + 2);
        if (id === 1) {
          let p = e + 4;
          const take = (): number => {
            if (p + 8 > e + 4 + length || p + 8 > extraEnd) this.fail(`corrupt zip64 extra field of ${name}`);
            const value = Number(directory.readBigUInt64LE(p));
            p += 8;
            return value;
          };
          if (directory.readUInt32LE(offset + 24) === 0xffffffff) take(); // uncompressed size
          if (size === 0xffffffff) size = take();
          if (local === 0xffffffff) local = take();
        }
        e += 4 + length;
      }
      if (method !== 0) this.fail(`entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed`);
      const localHeader = this.read(local, 30, `the local header of ${name}`);
      if (localHeader.readUInt32LE(0) !== 0x04034b50) this.fail(`corrupt local header of ${name}`);
      const start = local + 30 + localHeader.readUInt16LE(26) + localHeader.readUInt16LE(28);
      if (start + size > this.size) this.fail(`entry ${name} runs past the end of the file (truncated?)`);
      entries.set(name, { start, size });
      offset = extraEnd + commentLength;
    }
    return entries;
  }
}

// ---- pickle ------------------------------------------------------------------------------------

class PickleError extends Error {}

function unpickle(data: Buffer, file: string): unknown {
  const fail = (message: string): never => { throw new PickleError(`${file}: data.pkl: ${message}`); };
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  const need = (n: number): number => {
    if (pos + n > data.length) fail(`truncated: an opcode at byte ${pos} needs ${n} more bytes but the pickle has ${data.length}`);
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail(`stack underflow at byte ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`stack underflow at byte ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail('MARK expected');
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail(`truncated: a text line at byte ${pos} has no end`);
    const text = data.toString('utf8', pos, end);
    pos = end + 1;
    return text;
  };
  const string = (length: number): string => {
    const at = need(length);
    return data.toString('utf8', at, at + length);
  };
  const memoGet = (key: number): unknown => {
    if (!memo.has(key)) fail(`memo key ${key} used before it was set`);
    return memo.get(key);
  };
  const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : fail('APPEND to something that is not a list'));
  const dict = (value: unknown): Map<unknown, unknown> => (value instanceof Map ? value : fail('SETITEM on something that is not a dict'));
  const call = (callable: unknown, args: unknown): unknown => {
    if (!(callable instanceof Global)) return fail('REDUCE of a non-global');
    if (!Array.isArray(args)) return fail(`${callable.qualified} called without an argument tuple`);
    switch (callable.qualified) {
      case 'collections.OrderedDict': return new Map();
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor': {
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof StorageRef)) return fail('tensor without a storage');
        const dims = (value: unknown, what: string): number[] =>
          Array.isArray(value) && value.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
            ? value as number[]
            : fail(`tensor of storage ${storage.key}: ${what} must be non-negative integers, got ${describe(value)}`);
        const sizes = dims(size, 'sizes');
        const strides = dims(stride, 'strides');
        if (sizes.length !== strides.length) fail(`tensor of storage ${storage.key}: ${sizes.length} sizes but ${strides.length} strides`);
        if (!Number.isSafeInteger(offset) || (offset as number) < 0) fail(`tensor of storage ${storage.key}: storage offset must be a non-negative integer, got ${describe(offset)}`);
        return new TensorRef(storage, offset as number, sizes, strides);
      }
      case 'torch._utils._rebuild_parameter': return args[0];
      default: return fail(`unsupported global ${callable.qualified} (only dicts of tensors can be read)`);
    }
  };
  for (;;) {
    if (pos >= data.length) fail('ends without STOP (truncated?)');
    const op = data[pos++];
    switch (op) {
      case 0x80: need(1); break; // PROTO
      case 0x95: need(8); break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x63: { const module = line(); stack.push(new Global(module, line())); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); stack.push(new Global(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x71: memo.set(data[need(1)], top()); break; // BINPUT
      case 0x72: memo.set(data.readUInt32LE(need(4)), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: stack.push(memoGet(data[need(1)])); break; // BINGET
      case 0x6a: stack.push(memoGet(data.readUInt32LE(need(4)))); break; // LONG_BINGET
      case 0x28: stack.push(MARK); break; // MARK
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const item = pop(); list(top()).push(item); break; } // APPEND
      case 0x65: { const items = popMark(); list(top()).push(...items); break; } // APPENDS
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { const value = pop(); const key = pop(); dict(top()).set(key, value); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
        const target = dict(top());
        for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
        break;
      }
      case 0x52: { const args = pop(); stack.push(call(pop(), args)); break; } // REDUCE
      case 0x62: pop(); break; // BUILD: state (an OrderedDict's _metadata) is not needed
      case 0x51: { // BINPERSID
        const id = pop();
        if (!Array.isArray(id) || id[0] !== 'storage' || !(id[1] instanceof Global)) return fail(`unsupported persistent id ${describe(Array.isArray(id) ? id[0] : id)}`);
        const type = id[1] as Global;
        const dtype = STORAGE_DTYPES[type.name];
        if (!dtype) fail(`unsupported storage type ${type.qualified}`);
        const numel = id[4];
        stack.push(new StorageRef(dtype, String(id[2]), Number.isSafeInteger(numel) && (numel as number) >= 0 ? numel as number : undefined));
        break;
      }
      case 0x58: stack.push(string(data.readUInt32LE(need(4)))); break; // BINUNICODE
      case 0x8c: stack.push(string(data[need(1)])); break; // SHORT_BINUNICODE
      case 0x4a: stack.push(data.readInt32LE(need(4))); break; // BININT
      case 0x4b: stack.push(data[need(1)]); break; // BININT1
      case 0x4d: stack.push(data.readUInt16LE(need(2))); break; // BININT2
      case 0x8a: { // LONG1
        const n = data[need(1)];
        const at = need(n);
        let value = 0n;
        for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[at + i]);
        if (n > 0 && data[at + n - 1] & 0x80) value -= 1n << BigInt(8 * n);
        stack.push(Number(value));
        break;
      }
      case 0x47: stack.push(data.readDoubleBE(need(8))); break; // BINFLOAT
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      default: fail(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}`);
    }
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Every tensor reference under `root`, with its flattened name; cycles and deep nesting are errors. */
function collectTensors(root: unknown, file: string): [string, TensorRef][] {
  const found: [string, TensorRef][] = [];
  const open = new Set<unknown>();
  const names = new Set<string>();
  const visit = (value: unknown, prefix: string, depth: number) => {
    if (value instanceof TensorRef) {
      if (names.has(prefix)) throw new Error(`${file}: two entries are named ${JSON.stringify(prefix)} once nested dicts are flattened`);
      names.add(prefix);
      found.push([prefix, value]);
    } else if (value instanceof Map) {
      if (open.has(value)) throw new Error(`${file}: entry ${JSON.stringify(prefix)} contains itself (cyclic pickle)`);
      if (depth >= MAX_NESTING) throw new Error(`${file}: dicts nested more than ${MAX_NESTING} deep at ${JSON.stringify(prefix)}`);
      open.add(value);
      for (const [key, item] of value) visit(item, prefix ? `${prefix}.${String(key)}` : String(key), depth + 1);
      open.delete(value);
    } else {
      throw new Error(`${file}: entry ${JSON.stringify(prefix)} is not a tensor or a dict of tensors`);
    }
  };
  visit(root, '', 0);
  return found;
}

/**
 * The tensors of a torch.save'd (Ordered)Dict[str, Tensor] (nested dicts flattened with '.'),
 * each a contiguous CPU tensor owning its memory; tensors sharing a storage (tied weights) are copies.
 */
export function readTorchSave(file: string): Map<string, Tensor> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot open: ${(error as Error).message}`);
  }
  try {
    return readArchive(new ArchiveReader(fd, file));
  } finally {
    fs.closeSync(fd);
  }
}

function readArchive(archive: ArchiveReader): Map<string, Tensor> {
  const { file } = archive;
  const entries = archive.entries();
  const pickleName = [...entries.keys()].find((name) => name.endsWith('/data.pkl') || name === 'data.pkl');
  if (!pickleName) throw new Error(`${file}: no data.pkl in the archive (not a torch.save file)`);
  const prefix = pickleName.slice(0, pickleName.length - 'data.pkl'.length);
  const pickle = entries.get(pickleName)!;
  if (pickle.size > MAX_PICKLE_BYTES) archive.fail(`data.pkl is ${pickle.size} bytes, over the ${MAX_PICKLE_BYTES}-byte limit for a dict of tensors`);
  let root: unknown;
  try {
    root = unpickle(archive.read(pickle.start, pickle.size, 'data.pkl'), file);
  } catch (error) {
    // Anything but our own message (a RangeError from a hostile length...) still names the file.
    if (error instanceof PickleError) throw error;
    throw new Error(`${file}: data.pkl: malformed pickle (${(error as Error).message})`);
  }
  const references = collectTensors(root, file);

  // One storage at a time, in file order, through one scratch buffer grown to the largest.
  const byStorage = new Map<string, [string, TensorRef][]>();
  for (const reference of references) {
    const key = reference[1].storage.key;
    if (!byStorage.has(key)) byStorage.set(key, []);
    byStorage.get(key)!.push(reference);
  }
  const located = [...byStorage].map(([key, users]) => {
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) throw new Error(`${file}: storage ${key} of ${users[0][0]} is missing from the archive`);
    return { key, users, entry };
  }).sort((a, b) => a.entry.start - b.entry.start);

  const made = new Map<string, Tensor>();
  let scratch = Buffer.alloc(0);
  try {
    for (const { key, users, entry } of located) {
      const { dtype, numel: declared } = users[0][1].storage;
      const size = itemSize(dtype);
      if (entry.size % size !== 0) archive.fail(`storage ${key} (${dtype}) holds ${entry.size} bytes, not a multiple of its ${size}-byte elements`);
      const numel = entry.size / size;
      if (declared !== undefined && declared !== numel) archive.fail(`storage ${key} declares ${declared} elements but holds ${numel}`);
      for (const [name, ref] of users) {
        const last = ref.size.some((n) => n === 0) ? -1 : ref.size.reduce((end, n, axis) => end + (n - 1) * ref.stride[axis], ref.offset);
        if (last >= numel) archive.fail(`tensor ${JSON.stringify(name)} reaches element ${last} of storage ${key}, which holds ${numel}`);
      }
      if (scratch.length < entry.size) scratch = Buffer.allocUnsafe(entry.size);
      const bytes = archive.read(entry.start, entry.size, `storage ${key}`, scratch).subarray(0, entry.size);
      const flat = fromBytes(bytes, dtype, [numel]);
      try {
        for (const [name, ref] of users) {
          const strided = flat.asStrided(ref.size, ref.stride, ref.offset);
          const whole = users.length === 1 && ref.offset === 0 && strided.numel() === numel && strided.isContiguous();
          // A tensor that is its whole storage is kept as is; any other is copied out of it.
          if (whole) {
            made.set(name, strided);
          } else {
            made.set(name, strided.clone());
            strided.dispose();
          }
        }
      } finally {
        flat.dispose();
      }
    }
  } catch (error) {
    for (const t of made.values()) t.dispose();
    throw error;
  }
  return new Map(references.map(([name]) => [name, made.get(name)!]));
}
