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
  constructor(readonly dtype: DType, readonly key: string) {}
}
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}
const MARK = Symbol('mark');

// ---- zip ---------------------------------------------------------------------------------------

function readZipEntries(bytes: Buffer, file: string): Map<string, Buffer> {
  const fail = (message: string): never => { throw new Error(`${file}: ${message}`); };
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
    if (bytes.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) fail('not a zip archive (no end of central directory); is it a legacy, non-zip torch.save file?');
  let count = bytes.readUInt16LE(eocd + 10);
  let offset = bytes.readUInt32LE(eocd + 16);
  if (offset === 0xffffffff || count === 0xffff) {
    const locator = eocd - 20;
    if (locator < 0 || bytes.readUInt32LE(locator) !== 0x07064b50) fail('zip64 archive without a zip64 locator');
    const record = Number(bytes.readBigUInt64LE(locator + 8));
    if (record + 56 > bytes.length || bytes.readUInt32LE(record) !== 0x06064b50) fail('bad zip64 end of central directory');
    count = Number(bytes.readBigUInt64LE(record + 32));
    offset = Number(bytes.readBigUInt64LE(record + 48));
  }
  const entries = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    if (offset + 46 > bytes.length || bytes.readUInt32LE(offset) !== 0x02014b50) fail(`corrupt central directory at byte ${offset}`);
    const method = bytes.readUInt16LE(offset + 10);
    let size = bytes.readUInt32LE(offset + 20);
    const nameLength = bytes.readUInt16LE(offset + 28);
    const extraLength = bytes.readUInt16LE(offset + 30);
    const commentLength = bytes.readUInt16LE(offset + 32);
    let local = bytes.readUInt32LE(offset + 42);
    const name = bytes.toString('utf8', offset + 46, offset + 46 + nameLength);
    // zip64 extra field (id 1): the 64-bit sizes / offset, in that order, for fields set to 0xffffffff.
    for (let e = offset + 46 + nameLength; e + 4 <= offset + 46 + nameLength + extraLength;) {
      const id = bytes.readUInt16LE(e);
      const length = bytes.readUInt16LE(e + 2);
      if (id === 1) {
        let p = e + 4;
        if (bytes.readUInt32LE(offset + 24) === 0xffffffff) p += 8; // uncompressed size
        if (size === 0xffffffff) { size = Number(bytes.readBigUInt64LE(p)); p += 8; }
        if (local === 0xffffffff) local = Number(bytes.readBigUInt64LE(p));
      }
      e += 4 + length;
    }
    if (method !== 0) fail(`entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed`);
    if (local + 30 > bytes.length || bytes.readUInt32LE(local) !== 0x04034b50) fail(`corrupt local header of ${name}`);
    const start = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    if (start + size > bytes.length) fail(`entry ${name} runs past the end of the file (truncated?)`);
    entries.set(name, bytes.subarray(start, start + size));
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// ---- pickle ------------------------------------------------------------------------------------

function unpickle(data: Buffer, file: string): unknown {
  const fail = (message: string): never => { throw new Error(`${file}: data.pkl: ${message}`); };
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail('MARK expected');
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line');
    const text = data.toString('utf8', pos, end);
    pos = end + 1;
    return text;
  };
  const call = (callable: unknown, args: unknown[]): unknown => {
    if (!(callable instanceof Global)) return fail('REDUCE of a non-global');
    switch (callable.qualified) {
      case 'collections.OrderedDict': return new Map();
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor': {
        const [storage, offset, size, stride] = args as [StorageRef, number, number[], number[]];
        if (!(storage instanceof StorageRef)) fail('tensor without a storage');
        return new TensorRef(storage, offset, size, stride);
      }
      case 'torch._utils._rebuild_parameter': return args[0];
      default: return fail(`unsupported global ${callable.qualified} (only dicts of tensors can be read)`);
    }
  };
  for (;;) {
    if (pos >= data.length) fail('ends without STOP');
    const op = data[pos++];
    switch (op) {
      case 0x80: pos += 1; break; // PROTO
      case 0x95: pos += 8; break; // FRAME
      case 0x2e: return stack.pop(); // STOP
      case 0x63: { const module = line(); stack.push(new Global(module, line())); break; } // GLOBAL
      case 0x93: { const name = stack.pop() as string; stack.push(new Global(stack.pop() as string, name)); break; } // STACK_GLOBAL
      case 0x71: memo.set(data[pos++], stack[stack.length - 1]); break; // BINPUT
      case 0x72: memo.set(data.readUInt32LE(pos), stack[stack.length - 1]); pos += 4; break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack[stack.length - 1]); break; // MEMOIZE
      case 0x68: stack.push(memo.get(data[pos++])); break; // BINGET
      case 0x6a: stack.push(memo.get(data.readUInt32LE(pos))); pos += 4; break; // LONG_BINGET
      case 0x28: stack.push(MARK); break; // MARK
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([stack.pop()]); break; // TUPLE1
      case 0x86: { const b = stack.pop(); stack.push([stack.pop(), b]); break; } // TUPLE2
      case 0x87: { const c = stack.pop(); const b = stack.pop(); stack.push([stack.pop(), b, c]); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const item = stack.pop(); (stack[stack.length - 1] as unknown[]).push(item); break; } // APPEND
      case 0x65: { const items = popMark(); (stack[stack.length - 1] as unknown[]).push(...items); break; } // APPENDS
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { const value = stack.pop(); const key = stack.pop(); (stack[stack.length - 1] as Map<unknown, unknown>).set(key, value); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const dict = stack[stack.length - 1] as Map<unknown, unknown>;
        for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
        break;
      }
      case 0x52: { const args = stack.pop() as unknown[]; stack.push(call(stack.pop(), args)); break; } // REDUCE
      case 0x62: stack.pop(); break; // BUILD: state (an OrderedDict's _metadata) is not needed
      case 0x51: { // BINPERSID
        const id = stack.pop() as unknown[];
        const type = id[1];
        if (id[0] !== 'storage' || !(type instanceof Global)) fail(`unsupported persistent id ${JSON.stringify(id[0])}`);
        const dtype = STORAGE_DTYPES[(type as Global).name];
        if (!dtype) fail(`unsupported storage type ${(type as Global).qualified}`);
        stack.push(new StorageRef(dtype, String(id[2])));
        break;
      }
      case 0x58: { const n = data.readUInt32LE(pos); pos += 4; stack.push(data.toString('utf8', pos, pos + n)); pos += n; break; } // BINUNICODE
      case 0x8c: { const n = data[pos++]; stack.push(data.toString('utf8', pos, pos + n)); pos += n; break; } // SHORT_BINUNICODE
      case 0x4a: stack.push(data.readInt32LE(pos)); pos += 4; break; // BININT
      case 0x4b: stack.push(data[pos++]); break; // BININT1
      case 0x4d: stack.push(data.readUInt16LE(pos)); pos += 2; break; // BININT2
      case 0x8a: { // LONG1
        const n = data[pos++];
        let value = 0n;
        for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[pos + i]);
        if (n > 0 && data[pos + n - 1] & 0x80) value -= 1n << BigInt(8 * n);
        pos += n;
        stack.push(Number(value));
        break;
      }
      case 0x47: stack.push(data.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      default: fail(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}`);
    }
  }
}

/**
 * The tensors of a torch.save'd (Ordered)Dict[str, Tensor] (nested dicts flattened with '.'),
 * each a fresh contiguous CPU tensor; tensors sharing a storage (tied weights) are copies.
 */
export function readTorchSave(file: string): Map<string, Tensor> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const bytes = fs.readFileSync(file);
  const entries = readZipEntries(bytes, file);
  const pickleName = [...entries.keys()].find((name) => name.endsWith('/data.pkl') || name === 'data.pkl');
  if (!pickleName) throw new Error(`${file}: no data.pkl in the archive (not a torch.save file)`);
  const archive = pickleName.slice(0, pickleName.length - 'data.pkl'.length);
  const root = unpickle(entries.get(pickleName)!, file);
  const out = new Map<string, Tensor>();
  const storages = new Map<string, Tensor>();
  const visit = (value: unknown, prefix: string) => {
    if (value instanceof TensorRef) {
      const { storage } = value;
      let flat = storages.get(storage.key);
      if (!flat) {
        const raw = entries.get(`${archive}data/${storage.key}`);
        if (!raw) throw new Error(`${file}: storage ${storage.key} of ${prefix} is missing from the archive`);
        flat = fromBytes(raw, storage.dtype, [raw.length / itemSize(storage.dtype)]);
        storages.set(storage.key, flat);
      }
      const strided = flat.asStrided(value.size, value.stride, value.offset);
      out.set(prefix, strided.clone());
      strided.dispose();
    } else if (value instanceof Map) {
      for (const [key, item] of value) visit(item, prefix ? `${prefix}.${String(key)}` : String(key));
    } else {
      throw new Error(`${file}: entry ${JSON.stringify(prefix)} is not a tensor or a dict of tensors`);
    }
  };
  try {
    visit(root, '');
  } catch (error) {
    for (const t of out.values()) t.dispose();
    throw error;
  } finally {
    for (const t of storages.values()) t.dispose();
  }
  return out;
}
